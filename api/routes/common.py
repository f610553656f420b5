"""Helpers shared by the endpoints: the engine, and ORM rows shaped for the schemas."""
from __future__ import annotations

from flask import current_app
from flask_smorest import Blueprint as SmorestBlueprint

from engine.clock import as_utc
from engine.store import HumanTask, Instance, InstanceStatus, TaskStatus
from engine.workflow_engine import WorkflowEngine

from ..auth import current
from ..problems import ApiProblem

SECURITY: list[dict[str, list]] = [{"bearerAuth": []}]


class Blueprint(SmorestBlueprint):
    """flask-smorest's blueprint whose arguments' schemas are made once, when a route is
    declared: given a schema class, webargs makes an instance of it at every request (its
    fields copied and bound anew). A schema keeps no state between loads, so one instance
    serves every request and thread."""

    def arguments(self, schema, **kwargs):
        return super().arguments(schema() if isinstance(schema, type) else schema, **kwargs)


def engine() -> WorkflowEngine:
    return current_app.extensions["nd73"]


def utc_or_none(value):
    return as_utc(value) if value is not None else None


def instance_dict(instance: Instance) -> dict:
    incident = None
    if instance.status == InstanceStatus.INCIDENT:
        incident = {"message": instance.incident_message,
                    "element_id": instance.incident_element,
                    "at": utc_or_none(instance.incident_at)}
    return {
        "id": instance.id, "variant": instance.variant,
        "definition_key": instance.definition_key, "definition_id": instance.definition_id,
        "business_key": instance.business_key, "status": instance.status,
        "stage": instance.stage, "latest_decision": instance.latest_decision,
        "unit_id": instance.unit_id, "started_by": instance.started_by,
        "started_at": utc_or_none(instance.started_at),
        "updated_at": utc_or_none(instance.updated_at),
        "ended_at": utc_or_none(instance.ended_at), "incident": incident,
    }


def task_dict(task: HumanTask, candidates: list[str] | None = None) -> dict:
    now = engine().clock.now()
    due = utc_or_none(task.due_at)
    return {
        "id": task.id, "name": task.name, "element_id": task.element_id,
        "instance_id": task.instance_id, "role": task.role, "unit_id": task.unit_id,
        "form": task.form, "status": task.status, "assignee": task.assignee,
        "candidates": candidates if candidates is not None
        else engine().access.candidates(task.id),
        "created_at": utc_or_none(task.created_at), "due_at": due,
        "overdue": bool(due and task.status == TaskStatus.OPEN and due < now),
        "completed_at": utc_or_none(task.completed_at), "completed_by": task.completed_by,
    }


def tasks_dicts(tasks) -> list[dict]:
    """Tasks shaped for the API, their candidates read in one query."""
    candidates = engine().access.candidates_of([t.id for t in tasks])
    return [task_dict(t, candidates.get(t.id, [])) for t in tasks]


def page_dict(page, shape) -> dict:
    return {"items": [shape(item) for item in page.items], "total": page.total,
            "page": page.page, "page_size": page.page_size}


def visible_instance(instance_id: str) -> Instance:
    """The instance, if the caller may see it; 404 otherwise (its existence is not told)."""
    if not engine().access.can_see_instance(current(), instance_id):
        raise ApiProblem("not-found", f"instance {instance_id} does not exist",
                         code="instance.not_found")
    return engine().queries.instance(instance_id)


def visible_task(task_id: str) -> HumanTask:
    return visible_task_and_candidacy(task_id)[0]


def visible_task_and_candidacy(task_id: str) -> tuple[HumanTask, bool]:
    """The task, if the caller may see it (404 otherwise), and whether the caller is one
    of its candidates."""
    found = engine().access.visible_task(current(), task_id)
    if found is None:
        raise ApiProblem("not-found", f"task {task_id} does not exist", code="task.not_found")
    return found
