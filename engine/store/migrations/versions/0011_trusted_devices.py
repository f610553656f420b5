"""failed sign-ins name the trusted device they came from, if any

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 06:00:00

Failures were counted by username alone, so anyone who knew a name could keep its owner
locked out by failing five times every quarter of an hour. A browser or client that signed
in successfully as a user gets a signed device cookie; its failures are counted for that
device alone, and the lock that failures by name put on a user holds only for clients
without one (the "device cookie" defence against online guessing).
"""
import sqlalchemy as sa
from alembic import op


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('login_attempts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('device', sa.String(length=64), nullable=True))
        batch_op.create_index('ix_login_attempt_device', ['device', 'at'], unique=False)


def downgrade():
    with op.batch_alter_table('login_attempts', schema=None) as batch_op:
        batch_op.drop_index('ix_login_attempt_device')
        batch_op.drop_column('device')
