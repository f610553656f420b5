"""the organisation is administered in the product: a generation counter for the cached
tree, officials' phone numbers, memberships' from–to dates

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 06:00:00

Every change of units, officials or memberships bumps ``org_generation`` in its own
transaction; each process compares the counter with the one its cached tree was read at, so
no task goes to a head who was replaced a moment ago in another process.
"""
import sqlalchemy as sa
from alembic import op


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade():
    generation = op.create_table(
        'org_generation',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('generation', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('id'))
    op.bulk_insert(generation, [{'id': 1, 'generation': 0}])
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('phone', sa.String(length=32), nullable=True))
    with op.batch_alter_table('memberships', schema=None) as batch_op:
        batch_op.add_column(sa.Column('valid_from', sa.Date(), nullable=True))
        batch_op.add_column(sa.Column('valid_to', sa.Date(), nullable=True))


def downgrade():
    with op.batch_alter_table('memberships', schema=None) as batch_op:
        batch_op.drop_column('valid_to')
        batch_op.drop_column('valid_from')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('phone')
    op.drop_table('org_generation')
