"""key persons: drop the single-column index on grid_id; (grid_id, ended_at) serves every
query by grid, and with both PostgreSQL chose the narrow one and read all of a grid's past
key persons to find those under observation

Revision ID: 3f8d2c6a1b70
Revises: 3f6d2b8e1c47
"""

from alembic import op

revision = "3f8d2c6a1b70"
down_revision = "3f6d2b8e1c47"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("key_persons") as batch:
        batch.drop_index("ix_key_persons_grid_id")


def downgrade() -> None:
    with op.batch_alter_table("key_persons") as batch:
        batch.create_index("ix_key_persons_grid_id", ["grid_id"], unique=False)
