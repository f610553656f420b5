"""candidacies say whether their task is open; the inbox reads only open ones

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-23 20:00:00

An official's inbox looked up every candidacy they ever had (thousands after a few years)
and tested each open task of the whole database against them. ``task_candidates.task_open``
with a partial index on the open ones lets the inbox start from the official's open
candidacies alone, whatever the history.

A trigger keeps the flag equal to its task's status on every change of it (a completion,
a cancellation, a task reopened by a retry or a migration), inside the same UPDATE: no
writer has to remember it, and a step makes no extra round trip for it. (SQLite drops a
table's triggers with the table: a later migration that rebuilds human_tasks in batch mode
must create this one again.)
"""
import sqlalchemy as sa
from alembic import op


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

SQLITE_TRIGGER = """
CREATE TRIGGER human_tasks_candidacies_open AFTER UPDATE OF status ON human_tasks
WHEN (OLD.status = 'open') IS NOT (NEW.status = 'open')
BEGIN
    UPDATE task_candidates SET task_open = (NEW.status = 'open') WHERE task_id = NEW.id;
END"""
POSTGRES_FUNCTION = """
CREATE OR REPLACE FUNCTION nd73_candidacies_open() RETURNS trigger AS $$
BEGIN
    UPDATE task_candidates SET task_open = (NEW.status = 'open') WHERE task_id = NEW.id;
    RETURN NULL;
END
$$ LANGUAGE plpgsql"""
POSTGRES_TRIGGER = """
CREATE TRIGGER human_tasks_candidacies_open AFTER UPDATE OF status ON human_tasks
FOR EACH ROW WHEN ((OLD.status = 'open') IS DISTINCT FROM (NEW.status = 'open'))
EXECUTE FUNCTION nd73_candidacies_open()"""


def upgrade() -> None:
    # added as closed, which needs no rewrite of a large table's rows on PostgreSQL, then
    # the few candidacies of open tasks are opened; new candidacies are open by default
    op.add_column('task_candidates', sa.Column('task_open', sa.Boolean(), nullable=False,
                                               server_default=sa.false()))
    op.execute("UPDATE task_candidates SET task_open = TRUE WHERE task_id IN "
               "(SELECT id FROM human_tasks WHERE status = 'open')")
    with op.batch_alter_table('task_candidates') as batch_op:
        batch_op.alter_column('task_open', existing_type=sa.Boolean(), existing_nullable=False,
                              server_default=sa.true())
    # it replaces the index of all of a user's candidacies, which nothing else reads (a
    # task's candidates come from the primary key, a user's instances from
    # ix_candidate_user_instance)
    op.drop_index('ix_candidate_user', table_name='task_candidates')
    op.create_index('ix_candidate_open', 'task_candidates', ['username', 'task_id'],
                    postgresql_where=sa.text('task_open'), sqlite_where=sa.text('task_open = 1'))
    dialect = op.get_bind().dialect.name
    if dialect == 'sqlite':
        op.execute(SQLITE_TRIGGER)
    elif dialect == 'postgresql':
        op.execute(POSTGRES_FUNCTION)
        op.execute(POSTGRES_TRIGGER)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS human_tasks_candidacies_open"
               + (" ON human_tasks" if op.get_bind().dialect.name == 'postgresql' else ""))
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("DROP FUNCTION IF EXISTS nd73_candidacies_open()")
    op.drop_index('ix_candidate_open', table_name='task_candidates')
    op.create_index('ix_candidate_user', 'task_candidates', ['username', 'task_id'])
    with op.batch_alter_table('task_candidates') as batch_op:
        batch_op.drop_column('task_open')
