"""What every step of an instance shares: its statuses, how a failure becomes an incident,
the data a caller may put in, and the business stage after the step."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from SpiffWorkflow.util.task import TaskState

from .. import policy
from ..errors import InvalidData, ScriptError
from ..scripting import data_size
from ..store import AuditEvent, Instance, InstanceStatus

RUNNING, SUSPENDED, INCIDENT = (InstanceStatus.RUNNING, InstanceStatus.SUSPENDED,
                                InstanceStatus.INCIDENT)
COMPLETED, TERMINATED = InstanceStatus.COMPLETED, InstanceStatus.TERMINATED
ACTIVE_STATUSES = (RUNNING, SUSPENDED, INCIDENT)
ENDED_STATUSES = (COMPLETED, TERMINATED)
properties_of = policy.element_properties


@dataclass
class Incident:
    message: str
    element_id: str | None


def audit_entry(instance: Instance, at: datetime, actor: str, action: str,
                element_id: str | None = None, details: dict | None = None) -> AuditEvent:
    """An entry of the instance's audit chain (written with the unit of work's flush)."""
    return AuditEvent(instance_id=instance.id, definition_id=instance.definition_id, at=at,
                      actor=actor, action=action, element_id=element_id, details=details)


def element_of(task) -> str | None:
    return element_of_spec(task.task_spec)


def element_of_spec(spec) -> str | None:
    return getattr(spec, "bpmn_id", None) or spec.name


def incident_from(exc: Exception) -> Incident:
    task = getattr(exc, "task", None)
    element = element_of(task) if task is not None else None
    # SpiffWorkflow keeps the reason an expression failed only as the exception's context
    inner = getattr(exc, "exception", None) or exc.__cause__ or exc.__context__
    message = str(exc.args[0]) if exc.args else str(exc)
    if inner is not None and str(inner) not in message:
        message = f"{message}: {inner}"
    return Incident(message, element)


def clean_data(data: Any, max_bytes: int) -> dict:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InvalidData("data must be a JSON object", code="data.not_object")
    bad = [k for k in data if not isinstance(k, str) or k.startswith("_")]
    if bad:
        raise InvalidData(f"data field names must not start with '_': {bad[:5]}",
                          code="data.reserved_names",
                          params={"names": ", ".join(map(str, bad[:5]))})
    try:
        size = data_size(data, max_bytes)
    except ScriptError as exc:
        raise InvalidData(str(exc), code="data.unreadable",
                          params={"detail": str(exc)}) from None
    if size > max_bytes:
        raise InvalidData(f"data is larger than the limit of {max_bytes:,} bytes",
                          code="data.too_large", params={"limit": max_bytes})
    return data


def stage_after(live: list, completed: list, current: str | None) -> str | None:
    """The business stage: that of the open steps (``stage`` property) among the live
    (ready, waiting, started) tasks, else of the last finished element that names one (an
    end event, say), else unchanged."""
    for task in live:
        stage = properties_of(task.task_spec).get("stage")
        if stage and (task.task_spec.manual or task.has_state(TaskState.WAITING)):
            return stage
    for task in reversed(completed):
        stage = properties_of(task.task_spec).get("stage")
        if stage:
            return stage
    return current
