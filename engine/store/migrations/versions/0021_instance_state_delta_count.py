"""how many state deltas follow an instance's snapshot, on the instance's row

Revision ID: 0021
Revises: 0025
Create Date: 2026-12-03 16:30:00

``instances.state_deltas`` counts the rows of ``instance_state_deltas`` written after the
snapshot in ``state_data``: a load of an instance that has none (a new one, one just
snapshotted, every ended one) reads no delta rows. Existing rows get their real count.
"""
import sqlalchemy as sa
from alembic import op


revision = '0021'
down_revision = '0025'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('instances', sa.Column('state_deltas', sa.Integer(), nullable=False,
                                         server_default='0'))
    op.execute("UPDATE instances SET state_deltas = (SELECT count(*) FROM "
               "instance_state_deltas d WHERE d.instance_id = instances.id) "
               "WHERE id IN (SELECT instance_id FROM instance_state_deltas)")


def downgrade():
    op.drop_column('instances', 'state_deltas')
