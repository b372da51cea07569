"""supply requests can be cancelled: a request's state (pending, met, cancelled); those
closed before are met

Revision ID: 3f6d2b8e1c47
Revises: 7c1e5a0b9d42
Create Date: 2026-11-30 10:35:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '3f6d2b8e1c47'
down_revision = '7c1e5a0b9d42'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('supply_needs', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('state', sa.String(length=16), server_default='pending', nullable=False)
        )
    # Until now a request was closed only by being met.
    op.execute("UPDATE supply_needs SET state = 'met' WHERE closed_at IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table('supply_needs', schema=None) as batch_op:
        batch_op.drop_column('state')
