"""message subscriptions indexed by their instance

Revision ID: 0026
Revises: 0021
Create Date: 2026-12-04 10:40:00

Every step that moves past a message catch drops the instance's subscriptions of the tasks
that wait no more (``WHERE instance_id = … AND task_id IN …``), and a retry, a migration or
a timer's firing reads an instance's subscriptions: the only index (``message_name``,
``instance_id``) serves neither, so each scanned the whole table, which grows with every
instance waiting for a message.
"""
from alembic import op


revision = '0026'
down_revision = '0021'
branch_labels = None
depends_on = None


def upgrade():
    op.create_index('ix_subscription_instance', 'message_subscriptions',
                    ['instance_id', 'task_id'])


def downgrade():
    op.drop_index('ix_subscription_instance', table_name='message_subscriptions')
