"""health values can be removed: a key person's reason and a check-in's temperature may be
NULL once the record is anonymised (retention, /forget)

Revision ID: b0efbe557e09
Revises: 5c1e7a90d2b4
Create Date: 2026-11-30 07:27:31.977367
"""

from alembic import op
import sqlalchemy as sa
import storage.types


revision = 'b0efbe557e09'
down_revision = '5c1e7a90d2b4'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('checkins', schema=None) as batch_op:
        batch_op.alter_column('temperature',
               existing_type=sa.FLOAT(),
               nullable=True)

    with op.batch_alter_table('key_persons', schema=None) as batch_op:
        batch_op.alter_column('reason',
               existing_type=sa.VARCHAR(length=32),
               nullable=True)


def downgrade() -> None:
    with op.batch_alter_table('key_persons', schema=None) as batch_op:
        batch_op.alter_column('reason',
               existing_type=sa.VARCHAR(length=32),
               nullable=False)

    with op.batch_alter_table('checkins', schema=None) as batch_op:
        batch_op.alter_column('temperature',
               existing_type=sa.FLOAT(),
               nullable=False)
