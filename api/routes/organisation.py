"""Administration of a variant's organisation: units, officials and their positions, the HR
spreadsheet (import with a preview, export), officials who leave or move and their open
tasks, bulk reassignment, and the organisation's audit log. Administrators of the variant
only (the engine checks it, given the caller's principal)."""
from __future__ import annotations

from urllib.parse import quote

from flask import Response, current_app, request
from marshmallow import Schema, fields, validate

from engine.org import POSITIONS, UNIT_KINDS
from engine.tasks import Page

from .. import schemas
from ..auth import authenticated, current, official_credentials
from ..problems import ApiProblem
from .common import Blueprint, SECURITY, engine, page_dict, utc_or_none

blp = Blueprint("organisation", __name__,
                description="The organisation of a variant, administered (administrators)")

NAME = validate.Length(1, 255)


class UnitOut(schemas.OrgUnitOut):
    pass


class UnitIn(Schema):
    name = fields.String(required=True, validate=NAME)
    kind = fields.String(required=True, validate=validate.Length(1, 32),
                         metadata={"description": "one of " + ", ".join(UNIT_KINDS)
                                   + " (or the kind the unit has)"})
    parent_id = fields.String(allow_none=True, load_default=None,
                              validate=validate.Length(1, 64))
    tags = fields.List(fields.String(validate=validate.Length(1, 64)), load_default=list)


class MembershipFull(Schema):
    unit_id = fields.String(required=True)
    position = fields.String(required=True)
    valid_from = fields.Date(allow_none=True)
    valid_to = fields.Date(allow_none=True)


class OfficialOut(Schema):
    username = fields.String(required=True)
    full_name = fields.String(required=True)
    email = fields.String(allow_none=True)
    phone = fields.String(allow_none=True)
    active = fields.Boolean(required=True)
    sso_subject = fields.String(allow_none=True, metadata={
        "description": "the identity provider's value linked to the official, if any"})
    memberships = fields.List(fields.Nested(MembershipFull))


class OfficialIn(Schema):
    full_name = fields.String(required=True, validate=NAME)
    email = fields.String(allow_none=True, load_default=None, validate=validate.Length(0, 255))
    phone = fields.String(allow_none=True, load_default=None, validate=validate.Length(0, 32))
    password = fields.String(load_default=None, validate=validate.Length(8, 200),
                             metadata={"description": "a local password (demo, or where "
                                                      "sign-in is by password)"})
    sso_subject = fields.String(
        load_default=None, validate=validate.Length(0, 255),
        metadata={"description": "the value of the identity provider's claim "
                                 "(ND73_OIDC_CLAIM) that signs this official in; \"\" "
                                 "unlinks; absent: unchanged"})


class MembershipIn(Schema):
    unit_id = fields.String(required=True, validate=validate.Length(1, 64))
    position = fields.String(required=True, validate=validate.OneOf(POSITIONS))
    valid_from = fields.Date(load_default=None)
    valid_to = fields.Date(load_default=None)


REASSIGN = fields.Dict(keys=fields.String(), values=fields.String(allow_none=True),
                       load_default=None,
                       metadata={"description": "task id → username (null: give it up); "
                                                "a task not named passes to the new holder "
                                                "of the position"})


class EndIn(Schema):
    unit_id = fields.String(required=True, validate=validate.Length(1, 64))
    position = fields.String(required=True, validate=validate.OneOf(POSITIONS))
    reassign = REASSIGN


class MoveIn(Schema):
    from_unit = fields.String(required=True, validate=validate.Length(1, 64))
    to_unit = fields.String(required=True, validate=validate.Length(1, 64))
    position = fields.String(required=True, validate=validate.OneOf(POSITIONS))
    reassign = REASSIGN


class ActiveIn(Schema):
    active = fields.Boolean(required=True)
    reassign = REASSIGN


class Reassigned(Schema):
    task_id = fields.String(required=True)
    instance_id = fields.String(required=True)
    name = fields.String(allow_none=True)
    previous = fields.String(attribute="from", data_key="from", allow_none=True)
    to = fields.String(allow_none=True)
    claimed = fields.Boolean()


class ChangeOut(Schema):
    reassigned = fields.List(fields.Nested(Reassigned), required=True)


class OpenWork(Schema):
    task_id = fields.String(required=True)
    instance_id = fields.String(required=True)
    name = fields.String(allow_none=True)
    unit_id = fields.String(allow_none=True)
    claimed = fields.Boolean(required=True)
    successor = fields.String(allow_none=True,
                              metadata={"description": "who takes it by default"})


class HandoverOut(Schema):
    id = fields.Integer(required=True)
    unit_id = fields.String(required=True)
    position = fields.String(required=True)
    previous = fields.String(attribute="from", data_key="from", required=True,
                             metadata={"description": "the holder before"})
    to = fields.String(required=True, metadata={"description": "the one appointed"})
    effective_on = fields.Date(required=True, metadata={
        "description": "the new holder's first day: the tasks pass on then"})
    status = fields.String(required=True, validate=validate.OneOf(
        ("pending", "done", "cancelled")), metadata={
        "description": "pending (its day has not come), done, or cancelled (the "
                       "appointment changed before its day)"})
    created_by = fields.String(required=True)
    created_at = schemas.Utc(required=True)
    done_at = schemas.Utc(allow_none=True)
    tasks = fields.List(fields.Nested(Reassigned), required=True, metadata={
        "description": "the open tasks that moved (done) or would move if the day were "
                       "today (pending)"})


class BulkIn(Schema):
    task_ids = fields.List(fields.String(validate=validate.Length(1, 36)), required=True,
                           validate=validate.Length(1, 500))
    username = fields.String(required=True, validate=validate.Length(1, 128))


class ImportOut(Schema):
    rows = fields.Integer(required=True)
    applied = fields.Boolean(required=True)
    added = fields.List(fields.String())
    updated = fields.List(fields.Dict())
    memberships_added = fields.List(fields.Dict())
    memberships_ended = fields.List(fields.Dict())
    reassigned = fields.List(fields.Dict())
    linked = fields.List(fields.String(), metadata={
        "description": "officials the column sso_subject links to the identity provider"})
    errors = fields.List(fields.Dict(), metadata={"description": "row, column, code, "
                                                                 "message, value"})


class LogOut(Schema):
    id = fields.Integer(required=True)
    at = schemas.Utc(required=True)
    actor = fields.String(required=True)
    action = fields.String(required=True)
    details = fields.Dict()


class ExportArgs(Schema):
    format = fields.String(load_default="xlsx", validate=validate.OneOf(("xlsx", "csv")))


def _official(user, memberships) -> dict:
    issuer = current_app.extensions["nd73.settings"].oidc_issuer
    return {"username": user.username, "full_name": user.full_name, "email": user.email,
            "phone": user.phone, "active": user.active,
            "sso_subject": engine().identities.subject_of(issuer, user.username)
            if issuer else None,
            "memberships": [{"unit_id": m.unit_id, "position": m.position,
                             "valid_from": m.valid_from, "valid_to": m.valid_to}
                            for m in memberships]}


def _page(rows: list, args: dict, shape) -> dict:
    start = (args["page"] - 1) * args["page_size"]
    return page_dict(Page(rows[start:start + args["page_size"]], len(rows), args["page"],
                          args["page_size"]), shape)


def _admin(variant: str) -> None:
    engine().access.require_admin(current(), variant, "administer its organisation")


@blp.route("/org/<string:variant>/units")
@blp.arguments(schemas.PageArgs, location="query")
@blp.response(200, schemas.page_of(UnitOut))
@blp.doc(security=SECURITY)
@authenticated
def list_units(args, variant):
    """The variant's units (province, departments, communes, public-service units,
    enterprises with state capital, divisions)."""
    _admin(variant)
    return _page(engine().orgadmin.units(variant), args,
                 lambda u: {"id": u.id, "name": u.name, "parent_id": u.parent_id,
                            "kind": u.kind, "variant": u.variant, "tags": u.tags or []})


@blp.route("/org/<string:variant>/units/<string:unit_id>", methods=["PUT"])
@blp.arguments(UnitIn)
@blp.response(200, UnitOut)
@blp.doc(security=SECURITY)
@authenticated
def save_unit(body, variant, unit_id):
    """Create a unit or change it (name, kind, parent, tags)."""
    unit = engine().orgadmin.save_unit(current(), variant, unit_id, **body)
    return {"id": unit.id, "name": unit.name, "parent_id": unit.parent_id, "kind": unit.kind,
            "variant": unit.variant, "tags": unit.tags or []}


@blp.route("/org/<string:variant>/officials")
@blp.arguments(schemas.PageArgs, location="query")
@blp.response(200, schemas.page_of(OfficialOut))
@blp.doc(security=SECURITY)
@authenticated
def list_officials(args, variant):
    """The variant's officials with their positions (and those deactivated)."""
    _admin(variant)
    return _page(engine().orgadmin.officials(variant), args, lambda r: _official(*r))


@blp.route("/org/<string:variant>/officials/<string:username>", methods=["PUT"])
@blp.arguments(OfficialIn)
@blp.response(200, OfficialOut)
@blp.doc(security=SECURITY)
@authenticated
def save_official(body, variant, username):
    """Create an official or change their name, e-mail, phone (or local password)."""
    admin = engine().orgadmin
    password, identity = official_credentials(body.pop("password"), body.pop("sso_subject"))
    admin.save_official(current(), variant, username, password=password, identity=identity,
                        **body)
    return _official(*admin.official(variant, username))


@blp.route("/org/<string:variant>/officials/<string:username>/memberships",
           methods=["POST"])
@blp.arguments(MembershipIn)
@blp.response(200, ChangeOut)
@blp.doc(security=SECURITY)
@authenticated
def add_membership(body, variant, username):
    """Give an official a position in a unit. A new head (or acting head) replaces the one
    before, whose open tasks of the unit follow the position to the new one."""
    return engine().orgadmin.add_membership(current(), variant, username, **body)


@blp.route("/org/<string:variant>/officials/<string:username>/memberships/end",
           methods=["POST"])
@blp.arguments(EndIn)
@blp.response(200, ChangeOut)
@blp.doc(security=SECURITY)
@authenticated
def end_membership(body, variant, username):
    """End a position; its open tasks pass on in the same transaction."""
    return engine().orgadmin.end_membership(current(), variant, username, **body)


@blp.route("/org/<string:variant>/officials/<string:username>/move", methods=["POST"])
@blp.arguments(MoveIn)
@blp.response(200, ChangeOut)
@blp.doc(security=SECURITY)
@authenticated
def move(body, variant, username):
    """Move an official to a position in another unit; their open tasks of the unit they
    leave pass to the holders left there (or as ``reassign`` says)."""
    return engine().orgadmin.move(current(), variant, username, **body)


@blp.route("/org/<string:variant>/officials/<string:username>/active", methods=["POST"])
@blp.arguments(ActiveIn)
@blp.response(200, ChangeOut)
@blp.doc(security=SECURITY)
@authenticated
def set_active(body, variant, username):
    """Deactivate an official (positions end, open tasks pass on, sign-in refused) or
    activate them again."""
    return engine().orgadmin.set_active(current(), variant, username, body["active"],
                                        body.get("reassign"))


@blp.route("/org/<string:variant>/officials/<string:username>/open-work")
@blp.response(200, OpenWork(many=True))
@blp.doc(security=SECURITY)
@authenticated
def open_work(variant, username):
    """The open tasks an official is assigned to or a candidate for, with whom each passes
    to by default when they leave."""
    return [{"task_id": w["task"].id, "instance_id": w["task"].instance_id,
             "name": w["task"].name, "unit_id": w["task"].unit_id, "claimed": w["claimed"],
             "successor": w["successor"]}
            for w in engine().orgadmin.open_work(current(), variant, username)]


_IMPORT_DOC = {"requestBody": {"required": True, "content": {"multipart/form-data": {
    "schema": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary",
                 "description": "xlsx or CSV, one row per membership: "
                                "username, full_name, email, phone, unit_id, position, "
                                "valid_from, valid_to, active"},
        "apply": {"type": "boolean", "description": "false (default): a preview"}}}}}}}


@blp.route("/org/<string:variant>/import", methods=["POST"])
@blp.response(200, ImportOut)
@blp.doc(security=SECURITY, **_IMPORT_DOC)
@authenticated
def import_officials(variant):
    """Import the HR office's spreadsheet: a preview of what changes (and of each row's
    errors, naming row and column), or, with ``apply``, all of it or nothing."""
    upload = request.files.get("file") if request.mimetype.startswith("multipart/") else None
    if upload is None:
        raise ApiProblem("invalid-data", "attach the spreadsheet in the form field 'file'",
                         errors=[{"field": "file", "message": "Chưa có tệp",
                                  "message_en": "No file"}])
    apply = (request.form.get("apply") or "").lower() in ("1", "true", "yes")
    plan = engine().orgadmin.import_file(current(), variant, upload.read(),
                                         upload.filename or "officials.csv", apply,
                                         current_app.extensions["nd73.settings"].oidc_issuer)
    return {**plan.as_dict(), "applied": apply and not plan.errors}


@blp.route("/org/<string:variant>/export")
@blp.arguments(ExportArgs, location="query")
@blp.response(200, description="the officials' spreadsheet",
              content_type="application/octet-stream")
@blp.doc(security=SECURITY, responses={"200": {"description": "xlsx or CSV", "content": {
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {
        "schema": {"type": "string", "format": "binary"}},
    "text/csv": {"schema": {"type": "string"}}}}})
@authenticated
def export_officials(args, variant):
    """The variant's officials, one row per membership, in the import's format."""
    admin = engine().orgadmin
    issuer = current_app.extensions["nd73.settings"].oidc_issuer
    data = admin.export_file(admin.export_rows(current(), variant, issuer), args["format"])
    mimetype = "text/csv" if args["format"] == "csv" else \
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    return Response(data, mimetype=mimetype, headers={
        "Content-Disposition":
            f"attachment; filename*=UTF-8''{quote(variant)}-officials.{args['format']}"})


@blp.route("/org/<string:variant>/log")
@blp.arguments(schemas.PageArgs, location="query")
@blp.response(200, schemas.page_of(LogOut))
@blp.doc(security=SECURITY)
@authenticated
def audit_log(args, variant):
    """Every change of the variant's organisation, newest first."""
    events = engine().orgadmin.audit_log(current(), variant)
    return _page(events, args, lambda e: {"id": e.id, "at": utc_or_none(e.at),
                                          "actor": e.actor, "action": e.action,
                                          "details": e.details or {}})


@blp.route("/org/<string:variant>/handovers")
@blp.arguments(schemas.PageArgs, location="query")
@blp.response(200, schemas.page_of(HandoverOut))
@blp.doc(security=SECURITY)
@authenticated
def list_handovers(args, variant):
    """Heads (and acting heads) replaced, newest first: whose open tasks of the position
    passed to the new holder on their first day, or will pass when it comes."""
    return _page(engine().orgadmin.handovers(current(), variant), args,
                 lambda h: {**h, "created_at": utc_or_none(h["created_at"]),
                            "done_at": utc_or_none(h["done_at"])})


@blp.route("/org/<string:variant>/tasks/reassign", methods=["POST"])
@blp.arguments(BulkIn)
@blp.response(200, ChangeOut)
@blp.doc(security=SECURITY)
@authenticated
def bulk_reassign(body, variant):
    """Give several open tasks of the variant to one official."""
    return {"reassigned": engine().orgadmin.reassign_tasks(current(), variant,
                                                           body["task_ids"], body["username"])}
