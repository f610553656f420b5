"""official documents and their registers

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 06:00:00

``document_registers`` keeps the last number of each register (issuing agency, year, kind
of document); ``documents`` the issued documents (DOCX, SHA-256, the context they were
rendered from), which triggers make immutable, as audit_events are; ``document_pdfs`` the
PDFs converted from them on first download.
"""
import sqlalchemy as sa
from alembic import op

from engine.audit import create_triggers_sql, drop_triggers_sql


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('document_registers',
                    sa.Column('agency_id', sa.String(length=64), nullable=False),
                    sa.Column('year', sa.Integer(), autoincrement=False, nullable=False),
                    sa.Column('kind', sa.String(length=32), nullable=False),
                    sa.Column('last_number', sa.Integer(), nullable=False),
                    sa.PrimaryKeyConstraint('agency_id', 'year', 'kind'))
    op.create_table('documents',
                    sa.Column('id', sa.String(length=36), nullable=False),
                    sa.Column('instance_id', sa.String(length=36), nullable=False),
                    sa.Column('variant', sa.String(length=64), nullable=False),
                    sa.Column('element_id', sa.String(length=255), nullable=True),
                    sa.Column('template', sa.String(length=128), nullable=False),
                    sa.Column('kind', sa.String(length=32), nullable=False),
                    sa.Column('agency_id', sa.String(length=64), nullable=False),
                    sa.Column('year', sa.Integer(), nullable=False),
                    sa.Column('number', sa.Integer(), nullable=False),
                    sa.Column('reference', sa.String(length=128), nullable=False),
                    sa.Column('title', sa.String(length=500), nullable=False),
                    sa.Column('legal_basis', sa.Text(), nullable=True),
                    sa.Column('issued_at', sa.DateTime(timezone=True), nullable=False),
                    sa.Column('issued_by', sa.String(length=128), nullable=False),
                    sa.Column('signer', sa.String(length=128), nullable=True),
                    sa.Column('replaces_id', sa.String(length=36), nullable=True),
                    sa.Column('correction_reason', sa.Text(), nullable=True),
                    sa.Column('context', sa.JSON(), nullable=False),
                    sa.Column('sha256', sa.String(length=64), nullable=False),
                    sa.Column('content', sa.LargeBinary(), nullable=False),
                    sa.ForeignKeyConstraint(['instance_id'], ['instances.id']),
                    sa.ForeignKeyConstraint(['replaces_id'], ['documents.id']),
                    sa.PrimaryKeyConstraint('id'),
                    sa.UniqueConstraint('agency_id', 'year', 'kind', 'number',
                                        name='uq_document_number'))
    op.create_index('ix_document_instance', 'documents', ['instance_id', 'issued_at'])
    op.create_table('document_pdfs',
                    sa.Column('document_id', sa.String(length=36), nullable=False),
                    sa.Column('sha256', sa.String(length=64), nullable=False),
                    sa.Column('content', sa.LargeBinary(), nullable=False),
                    sa.Column('rendered_at', sa.DateTime(timezone=True), nullable=False),
                    sa.ForeignKeyConstraint(['document_id'], ['documents.id']),
                    sa.PrimaryKeyConstraint('document_id'))
    for statement in create_triggers_sql(op.get_bind().dialect.name, ("documents",)):
        op.execute(statement)


def downgrade() -> None:
    for statement in drop_triggers_sql(op.get_bind().dialect.name, ("documents",)):
        op.execute(statement)
    op.drop_table('document_pdfs')
    op.drop_index('ix_document_instance', table_name='documents')
    op.drop_table('documents')
    op.drop_table('document_registers')
