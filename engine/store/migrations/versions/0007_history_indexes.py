"""indexes that keep an official's searches independent of everyone else's history

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 05:15:00
"""
from alembic import op


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # who may see an instance: its proposer, who completed or had a task in it, its units
    op.create_index('ix_instance_started_by', 'instances', ['started_by', 'started_at'])
    op.create_index('ix_human_task_completed_by', 'human_tasks', ['completed_by'])
    op.create_index('ix_human_task_unit', 'human_tasks', ['unit_id', 'status'])


def downgrade() -> None:
    op.drop_index('ix_human_task_unit', table_name='human_tasks')
    op.drop_index('ix_human_task_completed_by', table_name='human_tasks')
    op.drop_index('ix_instance_started_by', table_name='instances')
