"""Migration 0027 stores documents' files (a DOCX, a PDF: compressed already) without
PostgreSQL's own compression, and the downgrade gives the columns PostgreSQL's default
again; on SQLite it changes nothing (tests/test_documents.py reads documents' files back as
written)."""
from __future__ import annotations

from sqlalchemy import text

from engine.store import Database
from engine.store.migrate import downgrade, upgrade

from scratch_db import scratch_database


def _storage(db: Database) -> dict[str, str] | None:
    """Each table's storage of ``content`` (PostgreSQL's attstorage; None on SQLite)."""
    if db.is_sqlite:
        return None
    with db.engine.connect() as connection:
        return dict(connection.execute(text(
            "SELECT attrelid::regclass::text, attstorage FROM pg_attribute "
            "WHERE attname = 'content' AND attrelid IN "
            "('documents'::regclass, 'document_pdfs'::regclass)")).all())


def test_documents_files_are_stored_as_they_are_and_the_downgrade_restores_the_default(
        database_url, tmp_path):
    with scratch_database(database_url, tmp_path, "document_storage") as url:
        db = Database(url)
        try:
            # (SQLite has no such setting: the migration runs both ways and changes nothing)
            external = None if db.is_sqlite else {"documents": "e", "document_pdfs": "e"}
            upgrade(db)
            assert _storage(db) == external
            downgrade(db, "0026")
            assert _storage(db) == (None if db.is_sqlite else {"documents": "x",
                                                               "document_pdfs": "x"})
            upgrade(db)
            assert _storage(db) == external
        finally:
            db.dispose()
