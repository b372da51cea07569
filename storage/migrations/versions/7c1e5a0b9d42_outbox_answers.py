"""outbox: the command a reply answers, for merged replies

Revision ID: 7c1e5a0b9d42
Revises: 9a4e3ac71e86
"""

import sqlalchemy as sa
from alembic import op

revision = "7c1e5a0b9d42"
down_revision = "9a4e3ac71e86"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("answers", sa.String(length=160), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("answers")
