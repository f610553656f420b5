"""Process instances: start, search, details, audit log and administrators' repairs."""
from __future__ import annotations

from flask import Response

from engine import dossier
from engine.documents.convert import ConversionFailed
from engine.errors import NotFound
from engine.queries import InstanceFilters

from .. import schemas
from ..auth import authenticated, current
from ..problems import ApiProblem
from .common import (Blueprint, SECURITY, engine, instance_dict, page_dict, tasks_dicts,
                     utc_or_none, visible_instance)

blp = Blueprint("instances", __name__, description="Process instances")


@blp.route("/instances", methods=["POST"])
@blp.arguments(schemas.InstanceCreate)
@blp.response(201, schemas.InstanceOut)
@blp.doc(security=SECURITY)
@authenticated
def start_instance(body):
    """Start a proposal, a protection request or (administrators) a reporting cycle, for
    ``unit_id`` (one of the caller's units in the variant, or any of a variant they
    administer) or else the caller's own unit there."""
    data = dict(body["data"])
    if body.get("unit_id") is not None:
        data["proposer_unit"] = body["unit_id"]
    instance = engine().runtime.start(body["variant"], body["definition_key"],
                                      principal=current(), data=data,
                                      business_key=body.get("business_key"))
    return instance_dict(instance)


@blp.route("/instances")
@blp.arguments(schemas.InstanceArgs, location="query")
@blp.response(200, schemas.page_of(schemas.InstanceOut))
@blp.doc(security=SECURITY)
@authenticated
def search_instances(args):
    """Instances the caller may see, newest first, filtered."""
    page, page_size = args.pop("page"), args.pop("page_size")
    filters = InstanceFilters(**args)
    result = engine().queries.instances(current(), filters, page, page_size)
    return page_dict(result, instance_dict)


@blp.route("/instances/<string:instance_id>")
@blp.response(200, schemas.InstanceDetailOut)
@blp.doc(security=SECURITY)
@authenticated
def get_instance(instance_id):
    """Status, stage, version, active and completed elements, open tasks, timers, data."""
    try:
        detail = engine().queries.detail(current(), instance_id)
    except NotFound:
        raise ApiProblem("not-found", f"instance {instance_id} does not exist") from None
    return {**instance_dict(detail.instance), "definition_version": detail.definition.version,
            "active_elements": detail.active_elements,
            "completed_elements": detail.completed_elements,
            "open_tasks": tasks_dicts(detail.open_tasks),
            "pending_timers": [{"element_id": t.element_id, "kind": t.kind,
                                "due_at": utc_or_none(t.due_at), "attempts": t.attempts}
                               for t in detail.pending_timers],
            "data": detail.data}


@blp.route("/instances/<string:instance_id>/events")
@blp.arguments(schemas.PageArgs, location="query")
@blp.response(200, schemas.page_of(schemas.EventOut))
@blp.doc(security=SECURITY)
@authenticated
def instance_events(args, instance_id):
    """The audit log of an instance, oldest first."""
    visible_instance(instance_id)
    page = engine().queries.events(current(), instance_id, args["page"], args["page_size"])
    return page_dict(page, lambda e: {"id": e.id, "at": utc_or_none(e.at), "actor": e.actor,
                                      "action": e.action, "element_id": e.element_id,
                                      "details": e.details})


@blp.route("/instances/<string:instance_id>/suspend", methods=["POST"])
@blp.arguments(schemas.Reason)
@blp.response(200, schemas.InstanceOut)
@blp.doc(security=SECURITY)
@authenticated
def suspend(body, instance_id):
    """Suspend a running instance (administrators)."""
    return instance_dict(engine().runtime.suspend(instance_id, principal=current(),
                                                  reason=body.get("reason")))


@blp.route("/instances/<string:instance_id>/resume", methods=["POST"])
@blp.response(200, schemas.InstanceOut)
@blp.doc(security=SECURITY)
@authenticated
def resume(instance_id):
    """Resume a suspended instance (administrators)."""
    return instance_dict(engine().runtime.resume(instance_id, principal=current()))


@blp.route("/instances/<string:instance_id>/terminate", methods=["POST"])
@blp.arguments(schemas.Reason)
@blp.response(200, schemas.InstanceOut)
@blp.doc(security=SECURITY)
@authenticated
def terminate(body, instance_id):
    """Terminate an instance for good (administrators)."""
    return instance_dict(engine().runtime.terminate(instance_id, principal=current(),
                                                    reason=body.get("reason")))


@blp.route("/instances/<string:instance_id>/retry", methods=["POST"])
@blp.arguments(schemas.Retry)
@blp.response(200, schemas.InstanceOut)
@blp.doc(security=SECURITY)
@authenticated
def retry(body, instance_id):
    """Run the failed element of an instance in incident again, with corrected data."""
    return instance_dict(engine().runtime.retry(instance_id, principal=current(),
                                                data=body["data"]))


@blp.route("/instances/<string:instance_id>/migrate", methods=["POST"])
@blp.arguments(schemas.Migrate)
@blp.response(200, schemas.InstanceOut)
@blp.doc(security=SECURITY)
@authenticated
def migrate(body, instance_id):
    """Move an instance to another version of its process (refused when unsafe)."""
    return instance_dict(engine().runtime.migrate(instance_id, body["definition_id"],
                                                  principal=current()))


@blp.route("/instances/<string:instance_id>/dossier")
@blp.response(200, schemas.DossierOut)
@blp.doc(security=SECURITY)
@authenticated
def instance_dossier(instance_id):
    """The case file so far, as its readers see it: each completed step's form with who
    (name, position, unit) and when, attachments, each vote's ballots and tally, the open
    steps with their deadline and legal basis. Rights as for the instance (404)."""
    try:
        return engine().dossiers.build(current(), instance_id)
    except NotFound:
        raise ApiProblem("not-found", f"instance {instance_id} does not exist",
                         code="instance.not_found") from None


@blp.route("/instances/<string:instance_id>/dossier.pdf")
@blp.response(200, description="the case file as one PDF", content_type="application/pdf")
@blp.doc(security=SECURITY, responses={"200": {"description": "PDF", "content": {
    "application/pdf": {"schema": {"type": "string", "format": "binary"}}}},
    "503": "Problem"})
@authenticated
def instance_dossier_pdf(instance_id):
    """The case file as one PDF document (A4): the same content as ``dossier``."""
    return dossier_pdf_response(current(), instance_id)


def dossier_pdf_response(principal, instance_id: str) -> Response:
    """The PDF download of a case's file for ``principal`` (404 if they may not see it;
    503 when the converter is missing or fails)."""
    try:
        content = engine().dossiers.build(principal, instance_id)
    except NotFound:
        raise ApiProblem("not-found", f"instance {instance_id} does not exist",
                         code="instance.not_found") from None
    try:
        document = dossier.pdf(content)
    except ConversionFailed as exc:
        raise ApiProblem("server-unavailable", f"the PDF could not be made: {exc}",
                         code="dossier.pdf_failed") from None
    return Response(document, mimetype="application/pdf", headers={
        "Content-Disposition": f'attachment; filename="{dossier.file_name(content, "pdf")}"'})
