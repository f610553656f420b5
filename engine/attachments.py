"""Files attached to forms: kept in the database, named safely, typed by their extension.

A file's type is never taken from the uploader's word: the extension must be on the list
below and decides the type it is served with (always as a download), so an uploaded page or
script can never run in someone's browser.
"""
from __future__ import annotations

import hashlib
import json
import unicodedata
import uuid
from pathlib import PurePosixPath

from .clock import Clock
from .errors import N_, InvalidData, NotFound
from .store import Database
from .store.models import Attachment

MAX_ATTACHMENT_BYTES = 8 * 1024 * 1024
TYPES = {
    ".pdf": "application/pdf",
    ".doc": "application/msword",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".xls": "application/vnd.ms-excel",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".odt": "application/vnd.oasis.opendocument.text",
    ".ods": "application/vnd.oasis.opendocument.spreadsheet",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".txt": "text/plain",
}


def safe_name(name: str) -> str:
    """The last part of an uploaded name, without control characters: ``../../x.pdf`` and
    ``C:\\x.pdf`` become ``x.pdf``. Refuses names that are empty or have no allowed type."""
    cleaned = unicodedata.normalize("NFC", name or "").replace("\\", "/")
    cleaned = "".join(c for c in PurePosixPath(cleaned).name
                      if unicodedata.category(c)[0] != "C").strip().lstrip(".")
    if not cleaned:
        raise InvalidData(f"the file name {name!r} is empty once its path is removed",
                          code="file.bad_name",
                          errors=[{"field": "file", "code": N_("file.bad_name"), "params": {},
                                   "message": "Invalid file name"}])
    if len(cleaned) > 255:
        stem, suffix = cleaned.rsplit(".", 1) if "." in cleaned else (cleaned, "")
        cleaned = stem[:250 - len(suffix)] + ("." + suffix if suffix else "")
    suffix = PurePosixPath(cleaned).suffix.lower()
    if suffix not in TYPES:
        allowed = ", ".join(sorted(TYPES))
        params = {"type": suffix or "—", "allowed": allowed}
        raise InvalidData(f"'{cleaned}': files of type '{suffix or '(none)'}' cannot be "
                          f"attached; allowed: {allowed}", code="file.type_refused",
                          params=params,
                          errors=[{"field": "file", "code": N_("file.type_refused"),
                                   "params": params,
                                   "message": f"Type '{suffix}' is not allowed; "
                                              f"allowed: {allowed}"}])
    return cleaned


class Attachments:
    def __init__(self, db: Database, clock: Clock, max_bytes: int = MAX_ATTACHMENT_BYTES):
        self.db = db
        self.clock = clock
        self.max_bytes = max_bytes

    def store(self, name: str, content: bytes, uploaded_by: str) -> Attachment:
        name = safe_name(name)
        if len(content) > self.max_bytes:
            params = {"name": name, "limit_mb": round(self.max_bytes / 1024 / 1024, 1)}
            raise InvalidData(f"'{name}' is {len(content):,} bytes; the limit is "
                              f"{self.max_bytes:,}", code="file.too_large", params=params,
                              errors=[{"field": "file", "code": N_("file.too_large"),
                                       "params": params, "message": "File too large"}])
        if not content:
            raise InvalidData(f"'{name}' is empty", code="file.empty", params={"name": name},
                              errors=[{"field": "file", "code": N_("file.empty"),
                                       "params": {"name": name}, "message": "Empty file"}])
        row = Attachment(id=str(uuid.uuid4()), name=name,
                         content_type=TYPES[PurePosixPath(name).suffix.lower()],
                         size=len(content), sha256=hashlib.sha256(content).hexdigest(),
                         content=content, uploaded_by=uploaded_by,
                         uploaded_at=self.clock.now())
        with self.db.transaction() as session:
            session.add(row)
        return row

    def get(self, file_id: str) -> Attachment:
        with self.db.reading() as session:
            row = session.get(Attachment, file_id) if len(file_id) <= 36 else None
        if row is None:
            raise NotFound(f"file {file_id} does not exist", code="file.not_found")
        return row

    @staticmethod
    def referenced_by(data: dict, file_id: str) -> bool:
        """Whether an instance's data names the file (so those who see it may read it)."""
        return f'"{file_id}"' in json.dumps(data, default=str)
