"""Deserialized workflows of recently saved instances, so a step does not rebuild from JSON
the workflow the previous step of the same process left in memory.

An entry is the workflow exactly as its state was committed, keyed by instance id with the
instance's version and definition at that commit. A unit of work *takes* the entry (nobody
else can use it meanwhile) and uses it only when the row it has just locked still has that
version and definition; otherwise another process or a failed step changed things and the
state is read from the row as before. Every write still goes through the optimistic version
check, so a stale entry can never be saved over newer state. Entries are put back only after
the commit, so a rolled-back step leaves nothing behind.

A reader (a task's form data) may *peek* at an entry of the version it has just read: its
function runs under the cache's lock, while no unit of work holds the entry, and must copy
what it returns (the workflow goes on changing with the instance's next step).
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, TypeVar

from SpiffWorkflow.bpmn import BpmnWorkflow

T = TypeVar("T")


class WorkflowCache:
    def __init__(self, size: int = 256):
        self.size = size
        self._entries: OrderedDict[str, tuple[int, int, BpmnWorkflow]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, instance_id: str, version: int, definition_id: int) -> BpmnWorkflow | None:
        with self._lock:
            entry = self._entries.pop(instance_id, None)
        if entry is not None and entry[0] == version and entry[1] == definition_id:
            return entry[2]
        return None

    def peek(self, instance_id: str, version: int, definition_id: int,
             read: Callable[[BpmnWorkflow], T]) -> T | None:
        """``read(workflow)`` of the entry saved at ``version``, None when there is none
        (or a unit of work has taken it)."""
        with self._lock:
            entry = self._entries.get(instance_id)
            if entry is None or entry[0] != version or entry[1] != definition_id:
                return None
            return read(entry[2])

    def put(self, instance_id: str, version: int, definition_id: int,
            workflow: BpmnWorkflow) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._entries[instance_id] = (version, definition_id, workflow)
            self._entries.move_to_end(instance_id)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def discard(self, instance_id: str) -> None:
        with self._lock:
            self._entries.pop(instance_id, None)
