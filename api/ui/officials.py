"""Officials' pages: the inbox, a task's form, starting a case, my cases and a case's page."""
from __future__ import annotations

import json

from flask import Blueprint, flash, redirect, render_template, request, url_for
from sqlalchemy import select

from engine import diagrams, dossier, policy
from engine.clock import as_utc
from engine.errors import Forbidden, InvalidData, NotFound
from engine.forms import form_errors
from engine.queries import InstanceFilters
from engine.store import Definition, HumanTask, OrgUnit, TaskStatus

from . import form_fields
from ..routes.common import visible_task_and_candidacy
from .attachments import store_uploads
from .i18n import error_text, refusal, t
from .web import engine, page_number, principal, signed_in

blp = Blueprint("officials", __name__, template_folder="templates")
PAGE_SIZE = 25
# bookkeeping of each step, shown to administrators only
TIMELINE_HIDDEN = ("element_completed", "task_opened", "task_cancelled", "task_reopened",
                   "timer_scheduled", "timer_cancelled", "timer_fired")


def is_overdue(task: HumanTask, now) -> bool:
    return task.status == TaskStatus.OPEN and task.due_at is not None and as_utc(task.due_at) < now


def unit_names(unit_ids) -> dict[str, str]:
    wanted = {u for u in unit_ids if u}
    if not wanted:
        return {}
    with engine().db.reading() as session:
        return dict(session.execute(select(OrgUnit.id, OrgUnit.name)
                                    .where(OrgUnit.id.in_(wanted))).all())


def case_titles(instance_ids) -> dict[str, str]:
    """A readable name per case: the title its forms declare, else its business key, else
    its process's name and short id."""
    return dossier.case_titles(engine().db, instance_ids)


def people_of(usernames) -> dict[str, dict]:
    """Users by username, as pages name them (full name, position, unit)."""
    return engine().dossiers.people.of(usernames)


@blp.route("/")
@signed_in
def inbox():
    scope = request.args.get("scope") \
        if request.args.get("scope") in ("mine", "candidate", "unit") else None
    overdue = True if request.args.get("overdue") == "1" else None
    page = engine().tasks.inbox(principal(), scope=scope, overdue=overdue,
                                page=page_number(), page_size=PAGE_SIZE)
    now = engine().clock.now()
    return render_template("inbox.html", page=page, scope=scope, overdue=overdue, now=now,
                           is_overdue=is_overdue,
                           titles=case_titles(t.instance_id for t in page.items),
                           units=unit_names(t.unit_id for t in page.items),
                           people=people_of(t.assignee for t in page.items))


# a task -------------------------------------------------------------------------------------

def _task_context(task_id: str):
    """The task (404 unless the caller may see it), its instance, definition and form, and
    whether the caller is one of its candidates."""
    wf_engine = engine()
    task, is_candidate = visible_task_and_candidacy(task_id)
    instance = wf_engine.queries.instance(task.instance_id)
    definition = wf_engine.repository.get(instance.definition_id)
    schema = wf_engine.repository.form(definition, task.form) or {"type": "object",
                                                                 "properties": {}}
    return task, instance, definition, schema, is_candidate


def _instructions(definition: Definition, element_id: str) -> str | None:
    spec, subprocesses = engine().repository.specs(definition)
    for candidate in [spec, *subprocesses.values()]:
        task_spec = candidate.task_specs.get(element_id)
        if task_spec is not None:
            text = (getattr(task_spec, "extensions", None) or {}).get("instructionsForEndUser")
            return text or None
    return None


def _render_task(task, instance, definition, schema, *, data=None, errors=None, raw=None,
                 status=200):
    wf_engine = engine()
    me = principal()
    candidates = wf_engine.access.candidates(task.id)
    may_work = task.status == TaskStatus.OPEN and wf_engine.access.may_work_on(
        me, task, me.username in candidates)
    if data is None:
        data = wf_engine.runtime.task_data(task.id) if task.status == TaskStatus.OPEN else {}
    # unit fields offer the units of the case's organisation, person fields its people
    # (in a row of several fields too)
    units = wf_engine.org.unit_directory(instance.variant) if form_fields.kinds(
        form_fields.build(schema, {})) & {"unit", "units"} else []
    fields = form_fields.build(schema, data, errors, raw, units)
    directory = wf_engine.org.directory(instance.variant) if form_fields.kinds(fields) & {
        "person", "people"} else []
    case_file = wf_engine.dossiers.build(me, instance.id)
    return render_template(
        "task.html", task=task, instance=instance, definition=definition, schema=schema,
        dossier=case_file, people=people_of([task.assignee, *candidates]),
        dossier_pdf=url_for("officials.dossier_pdf", instance_id=instance.id),
        fields=fields, directory=directory, errors=errors or {}, may_work=may_work,
        candidates=candidates,
        may_claim=(task.status == TaskStatus.OPEN and task.assignee is None
                   and me.username in candidates),
        instructions=_instructions(definition, task.element_id),
        overdue=is_overdue(task, wf_engine.clock.now()),
        title=case_file["title"]), status


@blp.route("/tasks/<string:task_id>")
@signed_in
def task_page(task_id):
    return _render_task(*_task_context(task_id)[:4])


@blp.route("/tasks/<string:task_id>", methods=["POST"])
@signed_in
def complete_task(task_id):
    task, instance, definition, schema, _ = _task_context(task_id)
    me = principal()
    if task.status != TaskStatus.OPEN:
        flash(t("task_closed"), "error")
        return redirect(url_for("officials.instance_page", instance_id=instance.id))
    data, errors = {}, {}
    try:
        data, unreadable = form_fields.parse(
            schema, request.form, store_uploads(schema, request.files, me.username))
        if unreadable:      # say everything wrong at once, the unreadable fields first
            errors = {**form_fields.field_messages(form_errors(schema, data)),
                      **form_fields.unreadable_messages(unreadable)}
        else:
            # the engine checks, with the instance locked, that the signed-in user may
            engine().runtime.complete_task(task_id, data, principal=me)
    except Forbidden as exc:
        flash(refusal(exc), "error")
        return _render_task(engine().tasks.get(task_id), instance, definition, schema,
                            status=403)
    except InvalidData as exc:
        errors = form_fields.field_messages(exc.details.get("errors", [])) or {
            "(form)": error_text(exc)}
    if errors:
        flash(t("form_invalid"), "error")
        return _render_task(task, instance, definition, schema, data=data, errors=errors,
                            raw=request.form, status=422)
    flash(t("task_done"), "success")
    return redirect(url_for("officials.instance_page", instance_id=instance.id))


@blp.route("/tasks/<string:task_id>/claim", methods=["POST"])
@signed_in
def claim(task_id):
    try:
        engine().tasks.claim(task_id, principal())
    except Forbidden as exc:
        flash(refusal(exc), "error")
    else:
        flash(t("claimed"), "success")
    return redirect(url_for("officials.task_page", task_id=task_id))


@blp.route("/tasks/<string:task_id>/unclaim", methods=["POST"])
@signed_in
def unclaim(task_id):
    try:
        engine().tasks.unclaim(task_id, principal())
    except Forbidden as exc:
        flash(refusal(exc), "error")
    return redirect(url_for("officials.task_page", task_id=task_id))


# starting a case -----------------------------------------------------------------------------

def startable() -> list[Definition]:
    """Processes an official starts by hand in the variants of their units: those the
    definition declares a case (``category`` = ``case``), not the ones the engine or other
    processes open (reporting cycles, the council)."""
    me = principal()
    with engine().db.reading() as session:
        variants = sorted({v for (v,) in session.execute(
            select(OrgUnit.variant).where(OrgUnit.id.in_(me.units or ("",))))})
    chosen = []
    for variant in variants:
        chosen += [d for d in engine().repository.latest_versions(variant)
                   if policy.category(d) == "case"]
    return chosen


@blp.route("/start")
@signed_in
def start_page():
    return render_template("start.html", definitions=startable())


@blp.route("/start", methods=["POST"])
@signed_in
def start_case():
    wanted = request.form.get("definition_id", "")
    chosen = next((d for d in startable() if str(d.id) == wanted), None)
    if chosen is None:
        raise NotFound(f"no startable process '{wanted}'", code="process.not_startable")
    me = principal()
    # for the official's own unit in the variant, which the engine finds and checks
    instance = engine().runtime.start(chosen.variant, chosen.key, principal=me)
    for task in engine().runtime.open_tasks(instance.id):
        if engine().access.may_work_on(me, task):
            return redirect(url_for("officials.task_page", task_id=task.id))
    return redirect(url_for("officials.instance_page", instance_id=instance.id))


# my cases and a case's page ------------------------------------------------------------------

@blp.route("/proposals")
@signed_in
def my_cases():
    page = engine().queries.instances(principal(), InstanceFilters(
        started_by=principal().username), page_number(), PAGE_SIZE)
    return render_template("proposals.html", page=page,
                           titles=case_titles(i.id for i in page.items))


def decision_fields(definition: Definition) -> tuple[str, ...]:
    """The fields the definition's user tasks declare as decisions."""
    return policy.decision_fields_of(definition, engine().repository.specs(definition))


def decision_labels(definition: Definition) -> dict[str, str]:
    """Decision values → the words their forms show (approve → Phê duyệt)."""
    labels: dict[str, str] = {}
    fields = decision_fields(definition)
    for name, text in definition.sources.items():
        if name.startswith("forms/"):
            for field, prop in (json.loads(text).get("properties") or {}).items():
                if field in fields:
                    labels.update(prop.get("x-enum-labels") or {})
    return labels


def timeline(instance_id: str, names: dict[str, str], everything: bool = False,
             decisions: tuple[str, ...] = (), bases: dict[str, str] | None = None
             ) -> list[dict]:
    events = engine().queries.events(principal(), instance_id, 1, 1000).items
    rows = []
    people = people_of(e.actor for e in events)
    for event in events:
        if event.action in TIMELINE_HIDDEN and not everything:
            continue
        changed = (event.details or {}).get("changed") or {}
        decided = next((changed[f]["after"] for f in decisions if f in changed), None)
        rows.append({"at": event.at, "actor": event.actor, "person": people.get(event.actor),
                     "action": event.action,
                     "element": names.get(event.element_id, event.element_id),
                     "decided": decided, "details": event.details,
                     "legal_basis": (bases or {}).get(event.element_id or "")})
    return rows


@blp.route("/instances/<string:instance_id>")
@signed_in
def instance_page(instance_id):
    wf_engine = engine()
    detail = wf_engine.queries.detail(principal(), instance_id)
    definition = detail.definition
    file_name, xml = diagrams.main_file(definition.sources, definition.key)
    names = diagrams.element_names(xml)
    admin = principal().is_admin(detail.instance.variant)
    versions = [d for d in wf_engine.repository.versions(detail.instance.variant,
                                                         definition.key)
                if d.id != definition.id] if admin else []
    case_file = wf_engine.dossiers.build(principal(), instance_id)
    return render_template(
        "instance.html", detail=detail, dossier=case_file,
        dossier_pdf=url_for("officials.dossier_pdf", instance_id=instance_id),
        people=people_of([detail.instance.started_by,
                          *(t.assignee for t in detail.open_tasks)]),
        instance=detail.instance, definition=definition,
        xml=xml, names=names, admin=admin, versions=versions,
        events=timeline(instance_id, names, everything=admin,
                        decisions=decision_fields(definition),
                        bases=policy.legal_bases_of(wf_engine.repository.specs(definition))),
        labels=decision_labels(definition),
        units=unit_names([detail.instance.unit_id, *(t.unit_id for t in detail.open_tasks)]),
        title=case_file["title"],
        data_json=json.dumps(detail.data, ensure_ascii=False, indent=2, sort_keys=True,
                             default=str))



@blp.route("/instances/<string:instance_id>/dossier.pdf")
@signed_in
def dossier_pdf(instance_id):
    """The case file as one PDF, for whoever may see the case."""
    from ..routes.instances import dossier_pdf_response
    return dossier_pdf_response(principal(), instance_id)
