"""The inbox and work on tasks: claim, unclaim, assign, complete. Who may do them is checked
by the engine's operations, given the caller's principal."""
from __future__ import annotations

from engine.store import TaskStatus

from .. import schemas
from ..auth import authenticated, current
from .common import (Blueprint, SECURITY, engine, instance_dict, task_dict, tasks_dicts,
                     visible_task)

blp = Blueprint("tasks", __name__, description="Inbox and tasks (officials)")


@blp.route("/tasks")
@blp.arguments(schemas.TaskArgs, location="query")
@blp.response(200, schemas.page_of(schemas.TaskOut))
@blp.doc(security=SECURITY)
@authenticated
def inbox(args):
    """Open tasks: assigned to me and claimable by me (default), or one scope of them."""
    page = engine().tasks.inbox(current(), scope=args.get("scope"),
                                instance_id=args.get("instance_id"),
                                overdue=args.get("overdue"), page=args["page"],
                                page_size=args["page_size"])
    return {"items": tasks_dicts(page.items), "total": page.total, "page": page.page,
            "page_size": page.page_size}


@blp.route("/tasks/<string:task_id>")
@blp.response(200, schemas.TaskDetailOut)
@blp.doc(security=SECURITY)
@authenticated
def get_task(task_id):
    """A task with its form (JSON Schema), current data, due date and candidates."""
    task = visible_task(task_id)
    wf_engine = engine()
    instance = wf_engine.queries.instance(task.instance_id)
    definition = wf_engine.repository.get(instance.definition_id)
    data = wf_engine.runtime.task_data(task_id) if task.status == TaskStatus.OPEN else {}
    return {**task_dict(task), "variant": instance.variant,
            "definition_key": instance.definition_key,
            "form_schema": wf_engine.repository.form(definition, task.form), "data": data}


@blp.route("/tasks/<string:task_id>/claim", methods=["POST"])
@blp.response(200, schemas.TaskOut)
@blp.doc(security=SECURITY)
@authenticated
def claim(task_id):
    """Take a task one is a candidate for."""
    return task_dict(engine().tasks.claim(task_id, current()))


@blp.route("/tasks/<string:task_id>/unclaim", methods=["POST"])
@blp.response(200, schemas.TaskOut)
@blp.doc(security=SECURITY)
@authenticated
def unclaim(task_id):
    """Give a claimed task back (its assignee, or an administrator)."""
    return task_dict(engine().tasks.unclaim(task_id, current()))


@blp.route("/tasks/<string:task_id>/assign", methods=["POST"])
@blp.arguments(schemas.Assign)
@blp.response(200, schemas.TaskOut)
@blp.doc(security=SECURITY)
@authenticated
def assign(body, task_id):
    """Give a task to a user (administrators of the variant)."""
    return task_dict(engine().tasks.assign(task_id, body["username"], current()))


@blp.route("/tasks/<string:task_id>/complete", methods=["POST"])
@blp.arguments(schemas.Complete)
@blp.response(200, schemas.InstanceOut)
@blp.doc(security=SECURITY)
@authenticated
def complete(body, task_id):
    """Submit a task's form (its assignee, or a candidate of an unclaimed task); the answer
    is the instance after the step."""
    instance = engine().runtime.complete_task(task_id, body["data"], principal=current())
    return instance_dict(instance)     # as the step committed it
