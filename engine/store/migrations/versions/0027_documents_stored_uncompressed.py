"""documents' files stored as they are, without PostgreSQL's compression

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-05 15:30:00

A document's DOCX (a zip, about 38 KB) and its PDF are compressed already: PostgreSQL tried
to compress each again (pglz, its default for a large value), found nothing to gain and
stored it as it was, after spending on the attempt about 40 % of the time the document's
INSERT took. Stored out of line without the attempt (``STORAGE EXTERNAL``), the bytes kept
are the same. SQLite has no such setting.
"""
from alembic import op


revision = '0027'
down_revision = '0026'
branch_labels = None
depends_on = None

_FILES = (("documents", "content"), ("document_pdfs", "content"))


def _storage(mode: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column in _FILES:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET STORAGE {mode}")


def upgrade():
    _storage("EXTERNAL")


def downgrade():
    _storage("EXTENDED")
