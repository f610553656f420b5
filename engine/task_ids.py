"""Task ids that keep their text.

SpiffWorkflow names every task it makes with a random UUID (``uuid4()``), and a save writes
each id as text several times (the task's own, its parent's, each of its children's, the
part's key): ``str()`` of a UUID formats its 128-bit number every time, about 0.6 µs. A
reporting cycle's opening makes a dozen tasks per unit and wrote their ids about four times
each: a twentieth of the opening.

:func:`new_task_id` makes the same kind of id (128 bits from ``os.urandom``, version 4, RFC
4122 variant) as a :class:`TaskId`, a UUID that formats its text once, when made. It equals,
hashes and orders as the UUID of the same number, so the ids SpiffWorkflow reads back from a
stored state (plain UUIDs) find the same tasks. :func:`install` makes it the id of every task
SpiffWorkflow creates in this process; :func:`spiff_uuid4` gives SpiffWorkflow's own back
(the bench's bare side runs the library as shipped).
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from uuid import UUID, SafeUUID

import SpiffWorkflow.task as spiff_task

# SpiffWorkflow's own (uuid.uuid4), as the library is shipped
SPIFF_UUID4 = spiff_task.uuid4

_new = object.__new__
_set = object.__setattr__          # a UUID refuses attribute changes of its own
_from_bytes = int.from_bytes
_unknown = SafeUUID.unknown


class TaskId(UUID):
    """A UUID that formats its text once."""

    __slots__ = ("_text",)
    _text: str

    def __str__(self) -> str:
        return self._text

    def __reduce__(self):
        # copied and pickled as the plain UUID of the same text
        return UUID, (self._text,)


def new_task_id() -> TaskId:
    """A random version-4 UUID, as ``uuid.uuid4()`` makes it, with its text."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40      # version 4
    raw[8] = raw[8] & 0x3F | 0x80      # the RFC 4122 variant
    hexed = raw.hex()
    task_id = _new(TaskId)
    _set(task_id, "int", _from_bytes(raw))
    _set(task_id, "is_safe", _unknown)
    _set(task_id, "_text",
         f"{hexed[:8]}-{hexed[8:12]}-{hexed[12:16]}-{hexed[16:20]}-{hexed[20:]}")
    return task_id


def install() -> None:
    """Tasks SpiffWorkflow creates in this process (``Task(...)`` without an id) get their
    id from :func:`new_task_id`."""
    spiff_task.uuid4 = new_task_id


@contextmanager
def spiff_uuid4() -> Iterator[None]:
    """SpiffWorkflow's own ``uuid4`` inside, :func:`new_task_id` again after."""
    ours, spiff_task.uuid4 = spiff_task.uuid4, SPIFF_UUID4
    try:
        yield
    finally:
        spiff_task.uuid4 = ours
