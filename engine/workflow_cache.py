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
from uuid import UUID

from SpiffWorkflow.bpmn import BpmnWorkflow

T = TypeVar("T")


class WorkflowCache:
    def __init__(self, size: int = 256):
        self.size = size
        self._entries: OrderedDict[str, tuple[int, int, BpmnWorkflow]] = OrderedDict()
        # the open tasks of the kept workflows (noted by the step that saved them): task id
        # to instance id
        self._open_tasks: dict[UUID, str] = {}
        self._lock = threading.Lock()

    def take(self, instance_id: str, version: int, definition_id: int) -> BpmnWorkflow | None:
        with self._lock:
            entry = self._pop(instance_id)
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

    def version_of(self, instance_id: str) -> int | None:
        """The version at which an instance's workflow is kept (None: not kept)."""
        with self._lock:
            entry = self._entries.get(instance_id)
        return entry[0] if entry is not None else None

    def holding(self, task_id: UUID) -> tuple[str, int] | None:
        """(instance id, version) of the kept workflow in which ``task_id`` was open when
        it was saved (None: none). A hint for a lock that finds the instance by the task:
        the workflow is still used only once :meth:`take` finds that version locked."""
        with self._lock:
            instance_id = self._open_tasks.get(task_id)
            if instance_id is None or instance_id not in self._entries:
                return None
            return instance_id, self._entries[instance_id][0]

    def put(self, instance_id: str, version: int, definition_id: int,
            workflow: BpmnWorkflow) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._pop(instance_id)
            self._entries[instance_id] = (version, definition_id, workflow)
            for task_id in getattr(workflow, _OPEN_TASKS, ()):
                self._open_tasks[task_id] = instance_id
            while len(self._entries) > self.size:
                self._pop(next(iter(self._entries)))

    def discard(self, instance_id: str) -> None:
        with self._lock:
            self._pop(instance_id)

    def _pop(self, instance_id: str):
        entry = self._entries.pop(instance_id, None)
        if entry is not None:
            for task_id in getattr(entry[2], _OPEN_TASKS, ()):
                if self._open_tasks.get(task_id) == instance_id:
                    del self._open_tasks[task_id]
        return entry


_OPEN_TASKS = "_nd73_open_tasks"


def note_open_tasks(workflow: BpmnWorkflow, task_ids: list[UUID]) -> None:
    """The ids of the tasks open (ready for a person) in ``workflow`` as it is being saved,
    for :meth:`WorkflowCache.holding` once it is kept."""
    setattr(workflow, _OPEN_TASKS, task_ids)


_WAITING_EVENTS = "_nd73_waiting_events"


def note_waiting_events(workflow: BpmnWorkflow, events: object) -> None:
    """The events (engine.runtime.projection.WaitingEvents) waiting in ``workflow`` as it
    is being saved: a kept workflow is its saved state, so its next step starts from these
    without walking its tasks again (a reporting cycle's tens of thousands)."""
    setattr(workflow, _WAITING_EVENTS, events)


def waiting_events_noted(workflow: BpmnWorkflow) -> object | None:
    """What :func:`note_waiting_events` noted at the workflow's last save (None: it was
    read from the store for this step)."""
    return getattr(workflow, _WAITING_EVENTS, None)
