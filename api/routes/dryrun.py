"""Dry-runs of a variant's procedures (designers): the scripts kept with the variant, and
a run of one (as kept, or with the designer's changes) against the variant's deployed
definitions and organisation, on a throw-away database (engine/dryrun.py)."""
from __future__ import annotations

from pathlib import Path

from marshmallow import INCLUDE, Schema, fields, validate

from engine.dryrun import load_deployed, load_draft, load_scripts, read_script, recorded_script, \
    run_script, script_from_dict, DRYRUN_FOLDER, FILE_NAME
from engine.errors import NotFound
from engine.store.db import PROJECT_ROOT

from .. import catalogues
from ..auth import authenticated, current
from ..problems import ApiProblem
from .common import Blueprint, SECURITY, engine

blp = Blueprint("dryrun", __name__, description="Dry-runs of procedures (designers)")
PROCESSES = PROJECT_ROOT / "processes"


def variant_folder(variant: str) -> Path:
    """Where the scripts of ``variant`` are kept (processes/<variant>/); NotFound for a
    name no variant can have (a path, too long, other characters)."""
    if not FILE_NAME.fullmatch(variant):
        raise NotFound(f"variant '{variant[:80]}' does not exist", code="variant.not_found",
                       params={"variant": variant[:80]})
    return PROCESSES / variant


def require_designer(variant: str) -> None:
    if not current().is_designer(variant):
        raise ApiProblem("forbidden", f"only designers of '{variant}' may dry-run its "
                         "processes", code="access.designer", params={"variant": variant})


def kept_scripts(variant: str) -> list[dict]:
    folder = variant_folder(variant)
    return [{"name": s.name, "file": s.file, "title": s.title, "process": s.process,
             "script": read_script(folder, s.name)} for s in load_scripts(folder)]


def recorded(instance_id: str, principal) -> tuple[str, dict]:
    """The variant and the recorded path of a case its variant's designer may read."""
    engine().access.require_visible(principal, instance_id)
    instance = engine().runtime.get(instance_id)
    if not principal.is_designer(instance.variant):
        raise ApiProblem("forbidden", f"only designers of '{instance.variant}' may dry-run "
                         "its processes", code="access.designer",
                         params={"variant": instance.variant})
    return instance.variant, recorded_script(engine(), instance_id)


def loader(variant: str, draft_of=None):
    """What a dry-run plays: the variant's deployed definitions, or, given the designer
    ``draft_of``, what deploying the variant's draft would put in place (NotFound when the
    variant has no draft)."""
    if draft_of is None:
        return load_deployed(engine(), variant)
    drafts = engine().drafts
    draft = drafts.get(variant, draft_of)
    if draft is None:
        raise NotFound(f"variant '{variant}' has no draft", code="draft.none",
                       params={"variant": variant})
    return load_draft(engine(), variant, drafts.inputs(variant, draft.files))


def run(variant: str, args: dict, draft_of=None) -> dict:
    """Run the script ``args["script"]`` kept with the variant, its fields replaced by
    those ``args`` gives (a script of the designer's own when no name is given), on the
    deployed definitions or (``draft_of``: the designer) on the variant's draft."""
    name = args.get("script")
    raw = dict(read_script(variant_folder(variant), name)) if name else {}
    raw.update({key: args[key] for key in ("title", "process", "started_by", "starts_at",
                                           "start_data", "steps", "expect") if key in args})
    label = f"{variant}/{DRYRUN_FOLDER}/{name}.toml" if name else f"{variant}/{DRYRUN_FOLDER}"
    script = script_from_dict(raw, name or "edited", label)
    return run_script(script, loader(variant, draft_of)).to_dict()


def failing_scripts(variant: str, draft_of=None, load=None) -> list[dict]:
    """The variant's kept scripts that fail on its newest deployed definitions (or, given
    the designer ``draft_of``, on its draft; or on what the loader ``load`` puts in place),
    one entry per failure (script, step, element, words): what the draft's page warns of
    before the designer deploys, and what refuses a deployment through the API."""
    warnings = []
    for script in load_scripts(variant_folder(variant)):
        result = run_script(script, load or loader(variant, draft_of))
        findings = [*result.incidents, *result.failures]
        for finding, line in zip(findings, result.problems()):
            warnings.append({"script": result.file, "step": finding.step,
                             "element_id": finding.element_id, "code": finding.code,
                             "params": finding.params,
                             "message": catalogues.say(finding.code, finding.params) or line,
                             "detail": line})
    return warnings


class ScriptOut(Schema):
    name = fields.String(required=True)
    file = fields.String(required=True)
    title = fields.String(required=True)
    process = fields.String(required=True)
    script = fields.Dict(required=True, metadata={"description": "the script's TOML table"})


class StepIn(Schema):
    class Meta:
        unknown = INCLUDE

    task = fields.String(required=True, validate=validate.Length(1, 255))
    data = fields.Dict(load_default=dict)
    by = fields.String(allow_none=True)
    every = fields.Boolean()
    at = fields.String(allow_none=True, metadata={"description": "dd/mm/yyyy [HH:MM], "
                                                                 "Asia/Ho_Chi_Minh"})
    wait = fields.String(allow_none=True, validate=validate.OneOf(["due"]))


class DryRunIn(Schema):
    script = fields.String(validate=validate.Regexp(r"^[A-Za-z0-9_-]{1,64}$"), metadata={
        "description": "a script kept with the variant (processes/<variant>/dryrun/)"})
    title = fields.String(validate=validate.Length(max=255))
    draft = fields.Boolean(load_default=False, metadata={
        "description": "play the variant's draft (what deploying it would put in place) "
                       "instead of its deployed definitions"})
    process = fields.String(validate=validate.Length(1, 128))
    started_by = fields.String(validate=validate.Length(1, 128))
    starts_at = fields.String(metadata={"description": "dd/mm/yyyy [HH:MM]"})
    start_data = fields.Dict()
    steps = fields.List(fields.Nested(StepIn), validate=validate.Length(max=200))
    expect = fields.Dict()


class FindingOut(Schema):
    code = fields.String(required=True)
    message = fields.String(required=True)
    step = fields.Integer(allow_none=True)
    element_id = fields.String(allow_none=True)
    element_name = fields.String(allow_none=True)
    params = fields.Dict()


class DryRunOut(Schema):
    script = fields.String(required=True)
    file = fields.String(required=True)
    title = fields.String(required=True)
    variant = fields.String(required=True)
    process = fields.String(required=True)
    passed = fields.Boolean(required=True)
    status = fields.String(allow_none=True)
    stage = fields.String(allow_none=True)
    end = fields.String(allow_none=True, metadata={"description": "the end event reached"})
    end_name = fields.String(allow_none=True)
    path = fields.List(fields.Dict(), required=True,
                       metadata={"description": "the elements passed, in order"})
    tasks = fields.List(fields.Dict(), required=True, metadata={
        "description": "each step: its candidates (full name, positions, units), created, "
                       "due (dd/mm/yyyy) and completed times"})
    documents = fields.List(fields.Dict(), required=True)
    notifications = fields.List(fields.Dict(), required=True)
    incidents = fields.List(fields.Nested(FindingOut), required=True)
    failures = fields.List(fields.Nested(FindingOut), required=True)


@blp.route("/variants/<string:variant>/dry-runs")
@blp.response(200, ScriptOut(many=True))
@blp.doc(security=SECURITY)
@authenticated
def list_dry_runs(variant):
    """The dry-run scripts kept with the variant (processes/<variant>/dryrun/*.toml)."""
    require_designer(variant)
    return kept_scripts(variant)


@blp.route("/variants/<string:variant>/dry-runs", methods=["POST"])
@blp.arguments(DryRunIn)
@blp.response(200, DryRunOut)
@blp.doc(security=SECURITY)
@authenticated
def run_dry_run(args, variant):
    """Play a script on a throw-away copy of the variant's deployed definitions and
    organisation, with an engine clock that jumps to each due date: the path taken, who gets
    each step, the due dates, the documents and notifications, incidents and failed
    expectations (each with its step and element). With ``draft``, the variant's draft is
    played instead. Real cases are never touched."""
    require_designer(variant)
    if not args.get("script") and not args.get("steps"):
        raise ApiProblem("invalid-data", "name a kept 'script' or give the 'steps'",
                         errors=[{"field": "script", "message": "Chọn kịch bản hoặc nhập "
                                  "các bước", "message_en": "Choose a script or give steps"}])
    return run(variant, args, current() if args.get("draft") else None)


class RecordedScript(Schema):
    title = fields.String(required=True)
    process = fields.String(required=True)
    started_by = fields.String(required=True)
    starts_at = fields.String(required=True, metadata={"description": "dd/mm/yyyy HH:MM"})
    steps = fields.List(fields.Dict(), required=True, metadata={
        "description": "task, by, at (dd/mm/yyyy HH:MM), data: as the case went"})
    expect = fields.Dict(required=True)


@blp.route("/instances/<string:instance_id>/dry-run-script")
@blp.response(200, RecordedScript)
@blp.doc(security=SECURITY)
@authenticated
def recorded_dry_run(instance_id):
    """A case's path as a dry-run script (who completed each step, when, with what data;
    the stage it reached), to replay with ``POST /variants/{variant}/dry-runs``: for the
    designers of its variant who may see the case."""
    _, table = recorded(instance_id, current())
    return table
