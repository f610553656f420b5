"""officials' accounts at the OpenID Connect provider: (issuer, subject) → official

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 09:30:00

Sign-in through the deployment's identity provider maps the provider's subject (or the
configured claim) to an official through this table, which administrators fill; a name the
provider sends is never trusted on its own.
"""
import sqlalchemy as sa
from alembic import op


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'identity_links',
        sa.Column('issuer', sa.String(length=255), nullable=False),
        sa.Column('subject', sa.String(length=255), nullable=False),
        sa.Column('username', sa.String(length=128), nullable=False),
        sa.Column('linked_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['username'], ['users.username'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('issuer', 'subject'),
        sa.UniqueConstraint('issuer', 'username', name='uq_identity_link_official'))
    op.create_index('ix_identity_links_username', 'identity_links', ['username'])


def downgrade():
    op.drop_index('ix_identity_links_username', table_name='identity_links')
    op.drop_table('identity_links')
