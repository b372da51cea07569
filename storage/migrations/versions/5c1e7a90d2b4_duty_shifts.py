"""duty shifts: post places, reminder lead time, start alert mark, no-show time

Revision ID: 5c1e7a90d2b4
Revises: e7b86a974d09
Create Date: 2026-11-30 07:45:00
"""

from alembic import op
import sqlalchemy as sa
import storage.types


revision = '5c1e7a90d2b4'
down_revision = 'e7b86a974d09'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('communities', schema=None) as batch_op:
        batch_op.add_column(sa.Column('shift_remind_minutes', sa.Integer(), server_default='60', nullable=False))
    with op.batch_alter_table('duty_posts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('place', sa.String(length=255), server_default='', nullable=False))
    with op.batch_alter_table('shifts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('started_alerted_at', storage.types.UTCDateTime(), nullable=True))
    with op.batch_alter_table('signups', schema=None) as batch_op:
        batch_op.add_column(sa.Column('noshow_at', storage.types.UTCDateTime(), nullable=True))
        batch_op.create_index(batch_op.f('ix_signups_person_id'), ['person_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('signups', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_signups_person_id'))
        batch_op.drop_column('noshow_at')
    with op.batch_alter_table('shifts', schema=None) as batch_op:
        batch_op.drop_column('started_alerted_at')
    with op.batch_alter_table('duty_posts', schema=None) as batch_op:
        batch_op.drop_column('place')
    with op.batch_alter_table('communities', schema=None) as batch_op:
        batch_op.drop_column('shift_remind_minutes')
