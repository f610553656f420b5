"""drafts of a variant's process folder, edited apart from deploying

Revision ID: 0016
Revises: 0014
Create Date: 2026-12-03 09:00:00

One shared draft per variant (``drafts``, its ``revision`` guarding concurrent saves) and
its files by path (``draft_files``).
"""
import sqlalchemy as sa
from alembic import op


revision = '0016'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'drafts',
        sa.Column('variant', sa.String(length=64), nullable=False),
        sa.Column('revision', sa.Integer(), nullable=False),
        sa.Column('based_on', sa.Integer(), nullable=False),
        sa.Column('created_by', sa.String(length=128), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_by', sa.String(length=128), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('variant'))
    op.create_table(
        'draft_files',
        sa.Column('variant', sa.String(length=64), nullable=False),
        sa.Column('path', sa.String(length=255), nullable=False),
        sa.Column('content', sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(['variant'], ['drafts.variant'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('variant', 'path'))


def downgrade():
    op.drop_table('draft_files')
    op.drop_table('drafts')
