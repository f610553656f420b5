"""Request and response shapes: the same marshmallow schemas validate requests and generate
the OpenAPI document."""
from __future__ import annotations

from datetime import timezone

from marshmallow import INCLUDE, Schema, ValidationError, fields, validate, validates_schema

from engine.store import InstanceStatus

Utc = lambda **kw: fields.AwareDateTime(default_timezone=timezone.utc, **kw)  # noqa: E731
Name = lambda **kw: fields.String(validate=validate.Length(1, 255), **kw)  # noqa: E731

STATUSES = tuple(status.value for status in InstanceStatus)


class PageArgs(Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(1, 100_000))
    page_size = fields.Integer(load_default=50, validate=validate.Range(1, 200))


def page_of(item_schema):
    return type(f"{item_schema.__name__}Page", (Schema,), {
        "items": fields.List(fields.Nested(item_schema), required=True),
        "total": fields.Integer(required=True),
        "page": fields.Integer(required=True),
        "page_size": fields.Integer(required=True),
    })


class Problem(Schema):
    """RFC 9457 problem details; errors may carry more members (e.g. ``reasons``)."""

    class Meta:
        unknown = INCLUDE

    type = fields.String(required=True)
    title = fields.String(required=True)
    status = fields.Integer(required=True)
    detail = fields.String()
    code = fields.String(metadata={"description": "message id of the catalogues "
                                                  "(api/translations), said with params"})
    params = fields.Dict()
    errors = fields.List(fields.Dict())
    problems = fields.List(fields.Dict())


# --- auth and people ---------------------------------------------------------------------
class TokenRequest(Schema):
    username = fields.String(required=True, validate=validate.Length(1, 128))
    password = fields.String(required=True, validate=validate.Length(1, 256),
                             load_only=True)


class Token(Schema):
    access_token = fields.String(required=True)
    token_type = fields.String(required=True)
    expires_in = fields.Integer(required=True)


class MembershipOut(Schema):
    unit_id = fields.String(required=True)
    position = fields.String(required=True)


class Me(Schema):
    username = fields.String(required=True)
    full_name = fields.String(required=True)
    units = fields.List(fields.Nested(type("MeUnit", (Schema,), {
        "unit_id": fields.String(), "unit_name": fields.String(),
        "variant": fields.String(), "position": fields.String()})))
    roles = fields.Dict(keys=fields.String(), values=fields.List(fields.String()))


class UserOut(Schema):
    username = fields.String(required=True)
    full_name = fields.String(required=True)
    memberships = fields.List(fields.Nested(MembershipOut))


class OrgUnitOut(Schema):
    id = fields.String(required=True)
    name = fields.String(required=True)
    parent_id = fields.String(allow_none=True)
    kind = fields.String(required=True)
    variant = fields.String(required=True)
    tags = fields.List(fields.String())


class VariantArgs(PageArgs):
    variant = fields.String(validate=validate.Length(1, 64))


# --- definitions -------------------------------------------------------------------------
class DefinitionArgs(Schema):
    variant = fields.String(validate=validate.Length(1, 64))
    key = fields.String(validate=validate.Length(1, 128))


class DefinitionOut(Schema):
    id = fields.Integer(required=True)
    key = fields.String(required=True)
    variant = fields.String(required=True)
    version = fields.Integer(required=True)
    name = fields.String(allow_none=True)
    content_hash = fields.String(required=True)
    deployed_at = Utc(required=True)
    deployed_by = fields.String(required=True)


class DefinitionDetail(DefinitionOut):
    bpmn = fields.Dict(keys=fields.String(), values=fields.String(),
                       metadata={"description": "BPMN/DMN files by name"})
    forms = fields.Dict(keys=fields.String(), values=fields.Dict(),
                        metadata={"description": "JSON Schemas of the forms by file name"})
    settings = fields.Dict()
    start_timers = fields.List(fields.Dict())


class DeployForm(Schema):
    variant = fields.String(required=True, validate=validate.Length(1, 64))


class DeployedOut(Schema):
    definition_id = fields.Integer(required=True)
    key = fields.String(required=True)
    variant = fields.String(required=True)
    version = fields.Integer(required=True)
    created = fields.Boolean(required=True)


class DeployResult(Schema):
    created = fields.Boolean(required=True)
    processes = fields.List(fields.Nested(DeployedOut), required=True)


class ValidationResult(Schema):
    valid = fields.Boolean(required=True)
    processes = fields.List(fields.String(), required=True)


class CodeCheck(Schema):
    variant = fields.String(required=True, validate=validate.Length(1, 64))
    code = fields.String(required=True, validate=validate.Length(max=100_000), metadata={
        "description": "A script (mode exec) or a condition or timer expression (mode eval)"})
    mode = fields.String(load_default="eval", validate=validate.OneOf(("eval", "exec")))


class CodeCheckResult(Schema):
    valid = fields.Boolean(required=True)
    message = fields.String(metadata={"description": "Why it is refused, in the reader's "
                                                     "language"})
    detail = fields.String(metadata={"description": "The sandbox's own words"})


class WorkingDaysArgs(Schema):
    days = fields.String(required=True, validate=validate.Length(1, 64), metadata={
        "description": "A number of working days, or a deadline name of the variant's "
                       "[deadlines]"})
    start = fields.Date(metadata={"description": "Counted from this day (default: today "
                                                 "on the engine clock)"})


class WorkingDaysOut(Schema):
    variant = fields.String(required=True)
    days = fields.Integer(required=True)
    start = fields.Date(required=True)
    due_at = Utc(required=True)
    due_local = fields.String(required=True, metadata={
        "description": "dd/mm/yyyy HH:MM in Asia/Ho_Chi_Minh"})


# --- instances ---------------------------------------------------------------------------
class InstanceCreate(Schema):
    definition_key = fields.String(required=True, validate=validate.Length(1, 128), metadata={
        "description": "The process to start: its id in the BPMN (e.g. a case or a "
                       "reporting cycle listed by GET /definitions)."})
    variant = fields.String(required=True, validate=validate.Length(1, 64), metadata={
        "description": "The province's variant whose newest deployed version starts."})
    data = fields.Dict(keys=fields.String(), load_default=dict, metadata={
        "description": "Start data. When the start event declares a form, the data must "
                       "satisfy it (422 lists each invalid field). Names starting with '_' "
                       "are refused."})
    business_key = fields.String(validate=validate.Length(1, 255), allow_none=True, metadata={
        "description": "A key of your own to find the instance and correlate messages."})
    unit_id = fields.String(validate=validate.Length(1, 64), allow_none=True, metadata={
        "description": "The unit the instance is started for. Defaults to the caller's own "
                       "unit; an administrator may name any unit of the variant. A process "
                       "that declares startUnit=required is refused with 422 naming unit_id "
                       "when no unit results; a process with a timer start event started "
                       "by hand runs for its schedule's unit (the province by default)."})


class InstanceArgs(PageArgs):
    variant = fields.String(validate=validate.Length(1, 64))
    definition_key = fields.String(validate=validate.Length(1, 128))
    status = fields.String(validate=validate.OneOf(STATUSES))
    stage = fields.String(validate=validate.Regexp(r"^[a-z][a-z0-9_]{0,63}$"), metadata={
        "description": "A business stage the variants declare ([stages] in variant.toml)"})
    unit = fields.String(validate=validate.Length(1, 64))
    started_by = fields.String(validate=validate.Length(1, 128))
    overdue = fields.Boolean()
    created_from = Utc()
    created_to = Utc()

    @validates_schema
    def range_in_order(self, data, **kwargs):
        if data.get("created_from") and data.get("created_to") \
                and data["created_from"] > data["created_to"]:
            raise ValidationError("created_from is after created_to", "created_from")


class Incident(Schema):
    message = fields.String()
    element_id = fields.String(allow_none=True)
    at = Utc(allow_none=True)


class InstanceOut(Schema):
    id = fields.String(required=True)
    variant = fields.String(required=True)
    definition_key = fields.String(required=True)
    definition_id = fields.Integer(required=True)
    business_key = fields.String(allow_none=True)
    status = fields.String(required=True)
    stage = fields.String(allow_none=True)
    latest_decision = fields.String(allow_none=True)
    unit_id = fields.String(allow_none=True)
    started_by = fields.String(required=True)
    started_at = Utc(required=True)
    updated_at = Utc(required=True)
    ended_at = Utc(allow_none=True)
    incident = fields.Nested(Incident, allow_none=True)


class TaskOut(Schema):
    id = fields.String(required=True)
    name = fields.String(allow_none=True)
    element_id = fields.String(required=True)
    instance_id = fields.String(required=True)
    role = fields.String(allow_none=True)
    unit_id = fields.String(allow_none=True)
    form = fields.String(allow_none=True)
    status = fields.String(required=True)
    assignee = fields.String(allow_none=True)
    candidates = fields.List(fields.String())
    created_at = Utc(required=True)
    due_at = Utc(allow_none=True)
    overdue = fields.Boolean(required=True)
    completed_at = Utc(allow_none=True)
    completed_by = fields.String(allow_none=True)


class TimerOut(Schema):
    element_id = fields.String(required=True)
    kind = fields.String(required=True)
    due_at = Utc(required=True)
    attempts = fields.Integer()


class InstanceDetailOut(InstanceOut):
    definition_version = fields.Integer(required=True)
    active_elements = fields.List(fields.String())
    completed_elements = fields.List(fields.String())
    open_tasks = fields.List(fields.Nested(TaskOut))
    pending_timers = fields.List(fields.Nested(TimerOut))
    data = fields.Dict()


class EventOut(Schema):
    id = fields.Integer(required=True)
    at = Utc(required=True)
    actor = fields.String(required=True)
    action = fields.String(required=True)
    element_id = fields.String(allow_none=True)
    details = fields.Dict(allow_none=True)


class Reason(Schema):
    reason = fields.String(validate=validate.Length(0, 2000), allow_none=True)


class Retry(Schema):
    data = fields.Dict(keys=fields.String(), load_default=dict)


class Migrate(Schema):
    definition_id = fields.Integer(required=True, validate=validate.Range(1, 2**31 - 1))


# --- tasks and messages ------------------------------------------------------------------
class TaskArgs(PageArgs):
    scope = fields.String(validate=validate.OneOf(("mine", "candidate", "unit")))
    instance_id = fields.String(validate=validate.Length(1, 36))
    overdue = fields.Boolean()


class TaskDetailOut(TaskOut):
    variant = fields.String(required=True)
    definition_key = fields.String(required=True)
    form_schema = fields.Dict(allow_none=True)
    data = fields.Dict()


class Complete(Schema):
    data = fields.Dict(keys=fields.String(), load_default=dict)


class Assign(Schema):
    username = fields.String(required=True, validate=validate.Length(1, 128))


class MessageIn(Schema):
    name = fields.String(required=True, validate=validate.Length(1, 255))
    instance_id = fields.String(validate=validate.Length(1, 36), allow_none=True)
    correlation_key = fields.String(validate=validate.Length(1, 255), allow_none=True)
    payload = fields.Dict(keys=fields.String(), load_default=dict)

    @validates_schema
    def target(self, data, **kwargs):
        if not data.get("instance_id") and not data.get("correlation_key"):
            raise ValidationError("give instance_id or correlation_key", "instance_id")


# --- notifications -----------------------------------------------------------------------
NOTIFICATION_MODES = ("immediate", "digest", "off")


class NotificationArgs(PageArgs):
    unread_only = fields.Boolean(load_default=False)


class NotificationOut(Schema):
    id = fields.Integer(required=True)
    kind = fields.String(required=True)
    title = fields.String(required=True)
    body = fields.String(required=True)
    task_id = fields.String(allow_none=True)
    instance_id = fields.String(allow_none=True)
    link = fields.String(required=True, metadata={"description": "path in the web app"})
    created_at = Utc(required=True)
    read_at = Utc(allow_none=True)


class NotificationPage(page_of(NotificationOut)):  # type: ignore[misc]  # a made class
    unread = fields.Integer(required=True, metadata={"description": "the caller's unread "
                                                                    "notifications"})


class MarkRead(Schema):
    ids = fields.List(fields.Integer(validate=validate.Range(1, 2**31 - 1)),
                      validate=validate.Length(max=1000), load_default=None,
                      metadata={"description": "omit to mark all of one's notifications"})


class MarkReadResult(Schema):
    marked = fields.Integer(required=True)
    unread = fields.Integer(required=True)


class PreferenceIn(Schema):
    mode = fields.String(required=True, validate=validate.OneOf(NOTIFICATION_MODES))


class PreferenceOut(PreferenceIn):
    email = fields.String(allow_none=True)


class DocumentOut(Schema):
    """An issued official document (Nghị định 30/2020/NĐ-CP) and where it stands."""
    id = fields.String(required=True)
    instance_id = fields.String(required=True)
    variant = fields.String(required=True)
    element_id = fields.String(allow_none=True, metadata={
        "description": "the step whose completion issued it"})
    kind = fields.String(required=True, metadata={
        "description": "the register's kind and the ký hiệu's first part: QĐ, TB, BB, TTr, CV…"})
    template = fields.String(required=True)
    agency_id = fields.String(required=True, metadata={"description": "the issuing agency"})
    agency = fields.String(required=True)
    year = fields.Integer(required=True)
    number = fields.Integer(required=True, metadata={
        "description": "its number in the agency's register of the year and kind"})
    reference = fields.String(required=True, metadata={"description": "số/ký hiệu, 05/QĐ-SXD"})
    title = fields.String(required=True, metadata={"description": "trích yếu"})
    legal_basis = fields.String(allow_none=True)
    issued_at = Utc(required=True)
    issued_by = fields.String(required=True)
    signer = fields.String(allow_none=True)
    signer_name = fields.String(required=True)
    sha256 = fields.String(required=True, metadata={
        "description": "SHA-256 of the DOCX, recorded in the case's audit chain"})
    size = fields.Integer(required=True)
    replaces = fields.String(allow_none=True, metadata={
        "description": "the document this one corrects"})
    replaced_by = fields.String(allow_none=True, metadata={
        "description": "the correction that replaces this one"})
    correction_reason = fields.String(allow_none=True)


class CorrectionIn(Schema):
    reason = fields.String(required=True, validate=validate.Length(1, 2000))

# --- a case's file (engine/dossier.py) ------------------------------------------------------

class DossierLabel(Schema):
    name = fields.String(allow_none=True)
    label = fields.String(allow_none=True)
    label_en = fields.String(allow_none=True)


class DossierPosition(Schema):
    position = fields.String(metadata={"description": "head, deputy, staff…"})
    label = fields.String(metadata={"example": "Người đứng đầu"})
    label_en = fields.String()
    unit_id = fields.String()
    unit = fields.String(metadata={"description": "the unit's name"})


class DossierPerson(Schema):
    username = fields.String()
    full_name = fields.String()
    positions = fields.List(fields.Nested(DossierPosition))
    text = fields.String(metadata={"description": "name (position, unit), as pages show it"})


class DossierField(Schema):
    name = fields.String()
    label = fields.String(metadata={"description": "the form's title of the field"})
    label_en = fields.String()
    value = fields.Raw(allow_none=True)
    text = fields.String(metadata={"description": "as read: money in đồng, dates dd/mm/yyyy, "
                                                  "choices by their labels"})
    kind = fields.String()


class DossierFile(Schema):
    name = fields.String()
    file_id = fields.String(metadata={"description": "download: GET /api/v1/files/{file_id}"})
    field = fields.String()
    label = fields.String()


class DossierForm(Schema):
    file = fields.String(allow_none=True)
    title = fields.String(allow_none=True)
    title_en = fields.String(allow_none=True)


class DossierDocument(Schema):
    id = fields.String(metadata={"description": "GET /api/v1/documents/{id}"})
    reference = fields.String(metadata={"description": "số/ký hiệu"})
    title = fields.String(metadata={"description": "trích yếu"})
    date_text = fields.String(metadata={"description": "dd/mm/yyyy"})


class DossierStepBase(Schema):
    element_id = fields.String()
    name = fields.String(metadata={"description": "the step's name in the diagram"})
    lane = fields.Nested(DossierLabel)
    legal_basis = fields.String(allow_none=True)
    at = fields.String(allow_none=True, metadata={"description": "ISO 8601, UTC"})
    at_text = fields.String(allow_none=True, metadata={"description": "dd/mm/yyyy HH:MM, "
                                                                       "Asia/Ho_Chi_Minh"})
    documents = fields.List(fields.Nested(DossierDocument), metadata={
        "description": "the official documents the step's completion issued"})


class DossierEntry(DossierStepBase):
    task_id = fields.String()
    form = fields.Nested(DossierForm)
    by = fields.Nested(DossierPerson, allow_none=True)
    fields_ = fields.List(fields.Nested(DossierField), data_key="fields", attribute="fields")
    attachments = fields.List(fields.Nested(DossierFile))


class DossierCount(Schema):
    field = fields.String()
    label = fields.String()
    value = fields.Raw()
    text = fields.String()
    count = fields.Integer()


class DossierStep(DossierEntry):
    kind = fields.String(metadata={"description": "step: one completed task; collective: "
                                                  "the completions of a multi-instance task "
                                                  "(a vote's ballots)"})
    counted = fields.List(fields.String(), metadata={"description": "the decision fields "
                                                                    "counted"})
    members = fields.List(fields.Nested(DossierEntry), metadata={
        "description": "each member's completion (ballot) with who and when"})
    counts = fields.List(fields.Nested(DossierCount))


class DossierCurrent(Schema):
    task_id = fields.String()
    element_id = fields.String()
    name = fields.String()
    lane = fields.Nested(DossierLabel)
    due_at = fields.String(allow_none=True)
    due_text = fields.String(allow_none=True, metadata={"description": "dd/mm/yyyy"})
    legal_basis = fields.String(allow_none=True)
    assignee = fields.Nested(DossierPerson, allow_none=True)
    candidates = fields.List(fields.Nested(DossierPerson))


class DossierOut(Schema):
    instance_id = fields.String(required=True)
    title = fields.String(required=True, metadata={
        "description": "the form field the procedure marks x-case-title, else the business "
                       "key"})
    business_key = fields.String(allow_none=True)
    process = fields.Dict()
    status = fields.String()
    stage = fields.Nested(DossierLabel)
    latest_decision = fields.Dict()
    unit = fields.Dict()
    proposer = fields.Nested(DossierPerson, allow_none=True)
    started_at = fields.String()
    started_at_text = fields.String()
    ended_at = fields.String(allow_none=True)
    steps = fields.List(fields.Nested(DossierStep))
    current = fields.List(fields.Nested(DossierCurrent))
    attachments = fields.List(fields.Nested(DossierFile))
