"""The official documents of a case, for the case page's "Văn bản" list
(templates/_documents.html)."""
from __future__ import annotations

from engine.errors import NotFound

from .web import engine, principal


def case_documents(instance_id: str) -> list[dict]:
    """The documents of a case the signed-in user may see (none when they may not)."""
    try:
        return engine().documents.of_instance(instance_id, principal=principal())
    except NotFound:
        return []
