"""supplies: item aliases and low-alert state, request numbers and who met them

Revision ID: 9a4e3ac71e86
Revises: b0efbe557e09
Create Date: 2026-11-30 07:27:40.247787
"""

from alembic import op
import sqlalchemy as sa
import storage.types


revision = '9a4e3ac71e86'
down_revision = 'b0efbe557e09'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('supply_items', schema=None) as batch_op:
        batch_op.add_column(sa.Column('aliases', sa.JSON(), nullable=False, server_default='[]'))
        batch_op.add_column(sa.Column('low_since', storage.types.UTCDateTime(), nullable=True))

    with op.batch_alter_table('supply_needs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('number', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('item_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('unit', sa.String(length=32), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('met_by_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('met_note', sa.Text(), nullable=False, server_default=''))
    # Requests stored before numbers existed get distinct ones.
    op.execute("UPDATE supply_needs SET number = id WHERE number IS NULL")
    with op.batch_alter_table('supply_needs', schema=None) as batch_op:
        batch_op.alter_column('number', existing_type=sa.Integer(), nullable=False)
        batch_op.create_index('ix_supply_needs_grid_open', ['grid_id', 'closed_at'], unique=False)
        batch_op.create_unique_constraint(batch_op.f('uq_supply_needs_community_id'), ['community_id', 'number'])
        batch_op.create_foreign_key(batch_op.f('fk_supply_needs_met_by_id_people'), 'people', ['met_by_id'], ['id'])
        batch_op.create_foreign_key(batch_op.f('fk_supply_needs_item_id_supply_items'), 'supply_items', ['item_id'], ['id'])

    with op.batch_alter_table('supply_reports', schema=None) as batch_op:
        batch_op.create_index('ix_supply_reports_item_at', ['item_id', 'at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('supply_reports', schema=None) as batch_op:
        batch_op.drop_index('ix_supply_reports_item_at')

    with op.batch_alter_table('supply_needs', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_supply_needs_item_id_supply_items'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_supply_needs_met_by_id_people'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('uq_supply_needs_community_id'), type_='unique')
        batch_op.drop_index('ix_supply_needs_grid_open')
        batch_op.drop_column('met_note')
        batch_op.drop_column('met_by_id')
        batch_op.drop_column('unit')
        batch_op.drop_column('item_id')
        batch_op.drop_column('number')

    with op.batch_alter_table('supply_items', schema=None) as batch_op:
        batch_op.drop_column('low_since')
        batch_op.drop_column('aliases')
