"""Administrators' pages: the dashboard, instance search, repairs of an instance and the
reporting cycles with their reports."""
from __future__ import annotations

import json
from datetime import date, datetime, time
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for

from engine import policy
from engine.clock import LOCAL_TZ
from engine.errors import EngineError, Forbidden, InvalidData, NotFound
from engine.notifications.outbox import failure_code
from engine.queries import InstanceFilters

from ..problems import ApiProblem
from ..routes.admin import OUTBOX_STATUSES
from .form_fields import parse_date
from .i18n import STATUS_KEYS, error_text, say, t
from .officials import case_titles, unit_names
from .web import engine, page_number, principal, signed_in

blp = Blueprint("admin_ui", __name__, template_folder="templates")
PAGE_SIZE = 25
FILTERS = ("variant", "definition_key", "status", "stage", "unit", "started_by")


def _require_admin(variant: str | None = None) -> None:
    if not principal().is_admin(variant):
        raise ApiProblem("forbidden", "only administrators may open this page",
                         code="access.admin_page")


@blp.route("/admin")
@signed_in
def dashboard():
    _require_admin()
    summary = engine().queries.summary(principal())
    return render_template("dashboard.html", summary=summary, statuses=STATUS_KEYS,
                           units=unit_names(summary.by_unit))


def _local_day(text: str, end: bool) -> datetime:
    day = date.fromisoformat(parse_date(text))
    return datetime.combine(day, time.max if end else time.min, LOCAL_TZ)


def _filters() -> tuple[InstanceFilters, dict[str, Any]]:
    """The API's instance filters, read from the search form; unreadable dates are named."""
    values: dict[str, Any] = {name: (request.args.get(name) or "").strip()[:128]
                              for name in FILTERS}
    filters = InstanceFilters(**{k: v for k, v in values.items() if v})
    errors = {}
    for name, end in (("created_from", False), ("created_to", True)):
        text = (request.args.get(name) or "").strip()
        values[name] = text
        if text:
            try:
                setattr(filters, name, _local_day(text, end))
            except ValueError:
                errors[name] = t("date_hint")
    if request.args.get("overdue") == "1":
        filters.overdue, values["overdue"] = True, "1"
    return filters, {**values, "errors": errors}


@blp.route("/admin/instances")
@signed_in
def search():
    _require_admin()
    filters, values = _filters()
    page = engine().queries.instances(principal(), filters, page_number(), PAGE_SIZE)
    return render_template("search.html", page=page, values=values, statuses=STATUS_KEYS,
                           titles=case_titles(i.id for i in page.items),
                           units=unit_names(i.unit_id for i in page.items))


ACTIONS = ("suspend", "resume", "terminate", "retry", "migrate")


@blp.route("/instances/<string:instance_id>/<string:action>", methods=["POST"])
@signed_in
def repair(instance_id, action):
    if action not in ACTIONS:
        raise ApiProblem("not-found", f"no action '{action}' on instance {instance_id}",
                         code="instance.no_such_action")
    runtime, me = engine().runtime, principal()      # the engine checks who may repair
    reason = (request.form.get("reason") or "").strip()[:500] or None
    try:
        if action == "suspend":
            runtime.suspend(instance_id, principal=me, reason=reason)
        elif action == "resume":
            runtime.resume(instance_id, principal=me)
        elif action == "terminate":
            runtime.terminate(instance_id, principal=me, reason=reason)
        elif action == "retry":
            runtime.retry(instance_id, principal=me,
                          data=_json_object(request.form.get("data")))
        else:
            runtime.migrate(instance_id, request.form.get("definition_id", type=int) or 0,
                            principal=me)
    except Forbidden:                      # not an administrator of it: the error page
        raise
    except NotFound as exc:                # an instance they may not see: the error page
        if exc.details.get("instance_id") == instance_id:
            raise
        flash(f"{t(action)}: {error_text(exc)}", "error")
    except EngineError as exc:             # refused: said on the page the admin came from
        flash(f"{t(action)}: {error_text(exc)}", "error")
    else:
        flash(f"{t('done')}: {t(action)}", "success")
    return redirect(url_for("officials.instance_page", instance_id=instance_id))


def _json_object(text: str | None) -> dict:
    if not (text or "").strip():
        return {}
    try:
        value = json.loads(text or "")
    except ValueError as exc:
        raise InvalidData(f"not valid JSON: {exc}", code="data.not_json",
                          params={"detail": str(exc)}) from None
    if not isinstance(value, dict):
        raise InvalidData("not valid JSON: an object {...} is expected",
                          code="data.not_object")
    return value


def cycle_keys() -> list[str]:
    """The processes the administrator's variants declare reporting cycles."""
    me = principal()
    keys: set[str] = set()
    for variant in engine().repository.variants():
        if me.is_admin(variant):
            keys.update(d.key for d in engine().repository.latest_versions(variant)
                        if policy.category(d) == "reporting_cycle")
    return sorted(keys)


@blp.route("/admin/cycles")
@signed_in
def cycles():
    _require_admin()
    found = []
    for key in cycle_keys():
        found += engine().queries.instances(principal(), InstanceFilters(definition_key=key),
                                            1, 200).items
    found.sort(key=lambda i: i.started_at, reverse=True)
    return render_template("cycles.html", cycles=found, titles=case_titles(i.id for i in found),
                           units=unit_names(i.unit_id for i in found))


@blp.route("/admin/outbox")
@signed_in
def outbox():
    _require_admin()
    status = request.args.get("status") if request.args.get("status") in OUTBOX_STATUSES \
        else None
    page = engine().notifications.outbox_page(principal(), status, page_number(), PAGE_SIZE)
    return render_template("outbox.html", page=page, status=status, statuses=OUTBOX_STATUSES,
                           failure=outbox_failure)


def outbox_failure(last_error: str) -> str:
    """Why an e-mail was not sent, in the page's language (the server's own words are
    shown apart, as technical detail)."""
    found = failure_code(last_error)
    return (say(*found) if found else None) or t("outbox_error.other")


@blp.route("/admin/outbox/<int:message_id>/retry", methods=["POST"])
@signed_in
def retry_email(message_id):
    _require_admin()
    try:
        engine().notifications.requeue(principal(), message_id)
    except EngineError as exc:
        flash(error_text(exc), "error")
    else:
        flash(t("done"), "success")
    return redirect(url_for("admin_ui.outbox", status=request.args.get("status")))
