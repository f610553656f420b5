"""a task remembers the positions its people came from; handovers of a position

Revision ID: 0025
Revises: 0020
Create Date: 2026-12-03 16:20:00

``human_tasks.positions``: the positions (comma-separated) through which the task's
candidates were resolved from its lane's role, "" when they were named personally (the
proposer, people listed in the case's data, one member's ballot); NULL for tasks opened
before this revision. A task follows a position only when it came from one.

``handovers``: a single-holder position (a head, an acting head) passing from one official
to the next, on the day the new one takes office: done at once for an appointment from
today, by the scheduler on the engine's clock for one from a later day; ``moved`` lists the
open tasks that passed.
"""
import sqlalchemy as sa
from alembic import op


revision = '0025'
down_revision = '0020'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('human_tasks', sa.Column('positions', sa.String(length=255), nullable=True))
    op.create_table(
        'handovers',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('variant', sa.String(length=64), nullable=False),
        sa.Column('unit_id', sa.String(length=64), nullable=False),
        sa.Column('position', sa.String(length=32), nullable=False),
        sa.Column('from_username', sa.String(length=128), nullable=False),
        sa.Column('to_username', sa.String(length=128), nullable=False),
        sa.Column('effective_on', sa.Date(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('created_by', sa.String(length=128), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('done_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('moved', sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint('id'))
    op.create_index('ix_handover_due', 'handovers', ['status', 'effective_on'])
    op.create_index('ix_handover_variant', 'handovers', ['variant', 'id'])


def downgrade():
    op.drop_index('ix_handover_variant', table_name='handovers')
    op.drop_index('ix_handover_due', table_name='handovers')
    op.drop_table('handovers')
    # in place (SQLite 3.35+ drops a column itself): copying the table would lose its
    # trigger and, through the foreign keys, the candidacies
    op.drop_column('human_tasks', 'positions')
