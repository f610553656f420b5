"""Files chosen in a form's attachment fields, stored before the form is checked so that a
refused form does not make the person choose them again."""
from __future__ import annotations

from werkzeug.datastructures import MultiDict

from engine.errors import InvalidData

from .form_fields import files_fields
from .web import engine


def store_uploads(schema: dict, files: MultiDict, username: str) -> dict[str, list[dict]]:
    stored: dict[str, list[dict]] = {}
    for path in files_fields(schema):
        for upload in files.getlist(path):
            if not upload.filename:
                continue                      # an empty file input
            try:
                row = engine().attachments.store(upload.filename, upload.read(), username)
            except InvalidData as exc:            # shown next to the field it came from
                raise InvalidData(exc.message, code=exc.message_code, params=exc.params,
                                  errors=[{**e, "field": path}
                                          for e in exc.details.get("errors", [])]) from None
            stored.setdefault(path, []).append({"name": row.name, "file_id": row.id})
    return stored
