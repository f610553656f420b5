"""candidacies name their instance; the indexes of an official's involvement cover it

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23 12:30:00
"""
import sqlalchemy as sa
from alembic import op


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

# index: (columns before, columns after); the instance id at the end lets an official's
# instance ids be read from the index alone, not from a table row per task
COVERED = {
    ('instances', 'ix_instance_started_by'): (['started_by', 'started_at'],
                                              ['started_by', 'started_at', 'id']),
    ('human_tasks', 'ix_human_task_assignee'): (['assignee', 'status'],
                                                ['assignee', 'status', 'instance_id']),
    ('human_tasks', 'ix_human_task_completed_by'): (['completed_by'],
                                                    ['completed_by', 'instance_id']),
    ('human_tasks', 'ix_human_task_unit'): (['unit_id', 'status'],
                                            ['unit_id', 'status', 'instance_id']),
}


def _indexes(which: int) -> None:
    for (table, name), columns in COVERED.items():
        op.drop_index(name, table_name=table)
        op.create_index(name, table, columns[which])


def upgrade() -> None:
    op.add_column('task_candidates', sa.Column('instance_id', sa.String(36), nullable=True))
    op.execute("UPDATE task_candidates SET instance_id = (SELECT human_tasks.instance_id "
               "FROM human_tasks WHERE human_tasks.id = task_candidates.task_id)")
    with op.batch_alter_table('task_candidates') as batch_op:
        batch_op.alter_column('instance_id', existing_type=sa.String(36), nullable=False)
    op.create_index('ix_candidate_user_instance', 'task_candidates',
                    ['username', 'instance_id'])
    _indexes(1)


def downgrade() -> None:
    _indexes(0)
    op.drop_index('ix_candidate_user_instance', table_name='task_candidates')
    with op.batch_alter_table('task_candidates') as batch_op:
        batch_op.drop_column('instance_id')
