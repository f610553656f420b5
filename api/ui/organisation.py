"""Administrators' pages of the organisation: the unit tree with its officials, an official's
page (details, positions, move, deactivation with their open work), the HR spreadsheet
(preview, then import; export), the organisation's log, bulk reassignment of tasks, and
assigning a task from the case page. The engine checks every right (engine.orgadmin)."""
from __future__ import annotations

from urllib.parse import quote

import base64
import binascii
from datetime import date

from flask import (Blueprint, Response, current_app, flash, redirect, render_template, request,
                   url_for)
from sqlalchemy import select

from engine.errors import N_, EngineError, InvalidData
from engine.org import POSITIONS, UNIT_KINDS
from engine.store import HumanTask, Instance, TaskStatus

from ..auth import official_credentials
from ..problems import ApiProblem
from .form_fields import parse_date
from .i18n import error_text, say, t
from .web import engine, principal, signed_in

blp = Blueprint("org_ui", __name__, template_folder="templates")


@blp.app_context_processor
def _words() -> dict:
    return {"org_word": word, "org_say": say}
MAX_TASKS = 200
# how pages name positions and unit kinds (others are shown as they are stored)
LABELS = {"head": N_("position.head"), "deputy": N_("position.deputy"),
          "acting_head": N_("position.acting_head"),
          "party_secretary": N_("position.party_secretary"),
          "office_staff": N_("position.office_staff"), "staff": N_("position.staff"),
          "council_member": N_("position.council_member"),
          "state_capital_representative": N_("position.state_capital_representative"),
          "province": N_("unit_kind.province"), "department": N_("unit_kind.department"),
          "commune": N_("unit_kind.commune"),
          "public_service_unit": N_("unit_kind.public_service_unit"),
          "enterprise": N_("unit_kind.enterprise"), "division": N_("unit_kind.division")}


def word(key: str) -> str:
    return t(LABELS[key]) if key in LABELS else key


def _admin(variant: str) -> None:
    if not principal().is_admin(variant):
        raise ApiProblem("forbidden", "only administrators of the variant may open this page",
                         code="access.admin_page")


def _tree(units) -> list[tuple[int, object]]:
    """Units in tree order with their depth."""
    children: dict = {}
    for unit in units:
        children.setdefault(unit.parent_id, []).append(unit)
    ids = {u.id for u in units}
    out: list[tuple[int, object]] = []

    def walk(unit, depth):
        out.append((depth, unit))
        for child in sorted(children.get(unit.id, []), key=lambda u: u.name):
            walk(child, depth + 1)
    for root in sorted((u for u in units if u.parent_id not in ids), key=lambda u: u.id):
        walk(root, 0)
    return out


def _day(name: str) -> date | None:
    text = (request.form.get(name) or "").strip()
    return date.fromisoformat(parse_date(text)) if text else None


def _reassign(work) -> dict[str, str | None]:
    """The task → successor choices of an open-work table (empty: give it up)."""
    chosen: dict[str, str | None] = {}
    for item in work:
        task_id = item["task"].id
        if f"to-{task_id}" in request.form:
            chosen[task_id] = (request.form.get(f"to-{task_id}") or "").strip() or None
    return chosen


def _said(result: dict) -> None:
    moved = result.get("reassigned") or []
    flash(t("org_done", count=len(moved)), "success")


@blp.route("/admin/org")
@signed_in
def variants():
    mine = [v for v in engine().repository.variants() if principal().is_admin(v)]
    if len(mine) == 1:
        return redirect(url_for("org_ui.page", variant=mine[0]))
    if not mine:
        _admin("")
    return render_template("org_variants.html", variants=mine)


@blp.route("/admin/org/<string:variant>")
@signed_in
def page(variant):
    _admin(variant)
    admin = engine().orgadmin
    units = admin.units(variant)
    officials = admin.officials(variant)
    members: dict = {}
    for user, memberships in officials:
        for m in memberships:
            members.setdefault(m.unit_id, []).append((user, m.position))
    return render_template("organisation.html", variant=variant, tree=_tree(units),
                           units=units, officials=officials, members=members,
                           kinds=sorted(set(UNIT_KINDS) | {u.kind for u in units}),
                           positions=POSITIONS)


@blp.route("/admin/org/<string:variant>/units", methods=["POST"])
@signed_in
def save_unit(variant):
    form = request.form
    try:
        engine().orgadmin.save_unit(
            principal(), variant, (form.get("id") or "").strip(),
            name=(form.get("name") or "").strip()[:255], kind=form.get("kind") or "",
            parent_id=(form.get("parent_id") or "").strip() or None,
            tags=[x.strip() for x in (form.get("tags") or "").split(",") if x.strip()])
    except EngineError as exc:
        flash(error_text(exc), "error")
    else:
        flash(t("done"), "success")
    return redirect(url_for("org_ui.page", variant=variant))


@blp.route("/admin/org/<string:variant>/officials", methods=["POST"])
@signed_in
def save_official(variant):
    form = request.form
    username = (form.get("username") or "").strip()
    try:
        password, identity = official_credentials(
            form.get("password") or None,
            form["sso_subject"][:255] if "sso_subject" in form else None)
        engine().orgadmin.save_official(
            principal(), variant, username, full_name=(form.get("full_name") or "").strip(),
            email=(form.get("email") or "").strip() or None,
            phone=(form.get("phone") or "").strip()[:32] or None,
            password=password, identity=identity)
    except EngineError as exc:
        flash(error_text(exc), "error")
        return redirect(request.referrer or url_for("org_ui.page", variant=variant))
    flash(t("done"), "success")
    return redirect(url_for("org_ui.official", variant=variant, username=username))


@blp.route("/admin/org/<string:variant>/officials/<string:username>")
@signed_in
def official(variant, username):
    _admin(variant)
    admin = engine().orgadmin
    user, memberships = admin.official(variant, username)
    work = admin.open_work(principal(), variant, username)
    settings = current_app.extensions["nd73.settings"]
    subject = engine().identities.subject_of(settings.oidc_issuer, username) \
        if settings.single_sign_on else None
    return render_template("org_official.html", variant=variant, user=user,
                           memberships=memberships, work=work, units=admin.units(variant),
                           positions=POSITIONS, sso_subject=subject,
                           single_sign_on=settings.single_sign_on,
                           password_sign_in=settings.password_sign_in,
                           sso_claim=settings.oidc_claim)


@blp.route("/admin/org/<string:variant>/officials/<string:username>/<string:action>",
           methods=["POST"])
@signed_in
def change(variant, username, action):
    admin, me = engine().orgadmin, principal()
    form = request.form
    try:
        if action == "add":
            _said(admin.add_membership(me, variant, username, form.get("unit_id") or "",
                                       form.get("position") or "", _day("valid_from"),
                                       _day("valid_to")))
        elif action == "end":
            work = admin.open_work(me, variant, username, form.get("unit_id") or "")
            _said(admin.end_membership(me, variant, username, form.get("unit_id") or "",
                                       form.get("position") or "", _reassign(work)))
        elif action == "move":
            work = admin.open_work(me, variant, username)
            _said(admin.move(me, variant, username, from_unit=form.get("from_unit") or "",
                             to_unit=form.get("to_unit") or "",
                             position=form.get("position") or "",
                             reassign=_reassign(work)))
        elif action in ("deactivate", "activate"):
            work = admin.open_work(me, variant, username)
            _said(admin.set_active(me, variant, username, action == "activate",
                                   _reassign(work)))
        else:
            raise ApiProblem("not-found", f"no action '{action}'")
    except ValueError:
        flash(t("date_hint"), "error")
    except EngineError as exc:
        flash(error_text(exc), "error")
    return redirect(url_for("org_ui.official", variant=variant, username=username))


@blp.route("/admin/org/<string:variant>/import", methods=["POST"])
@signed_in
def import_file(variant):
    _admin(variant)
    upload = request.files.get("file")
    if upload is not None and upload.filename:
        content, name = upload.read(), upload.filename
    else:
        try:
            content = base64.b64decode(request.form.get("content") or "", validate=True)
        except (binascii.Error, ValueError):
            content = b""
        name = (request.form.get("filename") or "officials.csv")[:200]
    if not content:
        flash(t("org_no_file"), "error")
        return redirect(url_for("org_ui.page", variant=variant))
    apply = request.form.get("apply") == "1"
    issuer = current_app.extensions["nd73.settings"].oidc_issuer
    try:
        plan = engine().orgadmin.import_file(principal(), variant, content, name, apply,
                                             issuer)
    except InvalidData as exc:
        if not exc.details.get("errors"):
            flash(error_text(exc), "error")
            return redirect(url_for("org_ui.page", variant=variant))
        plan = engine().orgadmin.import_file(principal(), variant, content, name, False,
                                             issuer)
        apply = False
    if apply:
        flash(t("org_imported", count=plan.rows), "success")
        return redirect(url_for("org_ui.page", variant=variant))
    return render_template("org_import.html", variant=variant, plan=plan, filename=name,
                           content=base64.b64encode(content).decode())


@blp.route("/admin/org/<string:variant>/export.<string:fmt>")
@signed_in
def export(variant, fmt):
    if fmt not in ("xlsx", "csv"):
        raise ApiProblem("not-found", f"no export as {fmt}")
    admin = engine().orgadmin
    issuer = current_app.extensions["nd73.settings"].oidc_issuer
    data = admin.export_file(admin.export_rows(principal(), variant, issuer), fmt)
    mimetype = "text/csv" if fmt == "csv" else \
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    return Response(data, mimetype=mimetype, headers={
        "Content-Disposition":
            f"attachment; filename*=UTF-8''{quote(variant)}-officials.{fmt}"})


@blp.route("/admin/org/<string:variant>/log")
@signed_in
def log(variant):
    events = engine().orgadmin.audit_log(principal(), variant)[:500]
    return render_template("org_log.html", variant=variant, events=events)


@blp.route("/admin/org/<string:variant>/handovers")
@signed_in
def handovers(variant):
    rows = engine().orgadmin.handovers(principal(), variant)[:500]
    return render_template("org_handovers.html", variant=variant, handovers=rows)


@blp.route("/admin/org/<string:variant>/tasks", methods=["GET", "POST"])
@signed_in
def tasks(variant):
    _admin(variant)
    if request.method == "POST":
        chosen = request.form.getlist("task_id")
        username = (request.form.get("username") or "").strip()
        if not chosen or not username:
            flash(t("org_choose_tasks"), "error")
        else:
            try:
                done = engine().orgadmin.reassign_tasks(principal(), variant, chosen, username)
            except EngineError as exc:
                flash(error_text(exc), "error")
            else:
                flash(t("org_done", count=len(done)), "success")
        return redirect(url_for("org_ui.tasks", variant=variant,
                                assignee=request.args.get("assignee") or None))
    who = (request.args.get("assignee") or "").strip()[:128]
    query = (select(HumanTask).join(Instance, Instance.id == HumanTask.instance_id)
             .where(Instance.variant == variant, HumanTask.status == TaskStatus.OPEN)
             .order_by(HumanTask.created_at, HumanTask.id).limit(MAX_TASKS))
    if who:
        query = query.where(HumanTask.assignee == who)
    with engine().db.reading() as session:
        rows = list(session.scalars(query))
    candidates = engine().access.candidates_of([r.id for r in rows])
    return render_template("org_tasks.html", variant=variant, tasks=rows,
                           candidates=candidates, assignee=who)


@blp.route("/admin/tasks/<string:task_id>/assign", methods=["POST"])
@signed_in
def assign(task_id):
    """An administrator assigns or reassigns a task from the case page."""
    username = (request.form.get("username") or "").strip()[:128]
    try:
        task = engine().tasks.assign(task_id, username, principal())
    except EngineError as exc:
        flash(error_text(exc), "error")
        task = engine().tasks.get(task_id)
    else:
        flash(t("done"), "success")
    return redirect(url_for("officials.instance_page", instance_id=task.instance_id))
