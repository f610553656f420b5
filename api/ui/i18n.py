"""The web app's words in the page's language (Vietnamese by default, English on request) from
the catalogues (api/catalogues.py), and how values are shown: dates dd/mm/yyyy and times in
Asia/Ho_Chi_Minh, money in đồng."""
from __future__ import annotations

import json
from datetime import date, datetime
from typing import overload

from flask import current_app, g, session

from engine.clock import LOCAL_TZ, as_utc
from engine.errors import N_
from engine.store import InstanceStatus

from .. import catalogues

LANGUAGES = catalogues.LANGUAGES


# vocabularies shown in the pages: value → message id
ACTION_LABELS = {     # the actions of the audit log shown in a case's timeline
    "instance_started": N_("event.instance_started"),
    "task_completed": N_("event.task_completed"), "task_claimed": N_("event.task_claimed"),
    "task_unclaimed": N_("event.task_unclaimed"), "task_assigned": N_("event.task_assigned"),
    "element_completed": N_("event.element_completed"), "reminder": N_("event.reminder"),
    "escalation": N_("event.escalation"), "timers_fired": N_("event.timers_fired"),
    "timer_moved": N_("event.timer_moved"), "message_received": N_("event.message_received"),
    "incident": N_("event.incident"), "instance_suspended": N_("event.instance_suspended"),
    "instance_resumed": N_("event.instance_resumed"),
    "instance_terminated": N_("event.instance_terminated"),
    "instance_retried": N_("event.instance_retried"),
    "instance_migrated": N_("event.instance_migrated"),
    "schedule_fired": N_("event.schedule_fired"),
    "definition_deployed": N_("event.definition_deployed"),
    "email_requeued": N_("event.email_requeued"),
    "instance_completed": N_("event.instance_completed"),
    "incident_resolved": N_("event.incident_resolved"), "task_opened": N_("event.task_opened"),
    "task_cancelled": N_("event.task_cancelled"), "task_reopened": N_("event.task_reopened"),
    "timer_scheduled": N_("event.timer_scheduled"),
    "document_issued": N_("event.document_issued"),
    "document_corrected": N_("event.document_corrected"),
    "timer_cancelled": N_("event.timer_cancelled"), "timer_fired": N_("event.timer_fired"),
    "timer_failed": N_("event.timer_failed"), "timer_rearmed": N_("event.timer_rearmed")}
STATUS_KEYS = (InstanceStatus.RUNNING, InstanceStatus.INCIDENT, InstanceStatus.SUSPENDED,
               InstanceStatus.COMPLETED, InstanceStatus.TERMINATED)
STATUS_LABELS = {   # value → message id, per kind of thing that has a status
    "instance": {"running": N_("status.running"), "incident": N_("status.incident"),
                 "suspended": N_("status.suspended"), "completed": N_("status.completed"),
                 "terminated": N_("status.terminated")},
    "task": {"open": N_("task_status.open"), "completed": N_("task_status.completed"),
             "cancelled": N_("task_status.cancelled")},
    "outbox": {"pending": N_("outbox_status.pending"), "sending": N_("outbox_status.sending"),
               "sent": N_("outbox_status.sent"), "failed": N_("outbox_status.failed"),
               "unknown": N_("outbox_status.unknown")},
}
# timers by the kind of their event (engine.scripting), and e-mail preferences
TIMER_KINDS = {
    "EngineTimeDate": N_("timer_kind.date"), "TimeDateEventDefinition": N_("timer_kind.date"),
    "StartTimeDate": N_("timer_kind.start_date"),
    "EngineDuration": N_("timer_kind.duration"),
    "DurationTimerEventDefinition": N_("timer_kind.duration"),
    "StartDuration": N_("timer_kind.start_duration"),
    "EngineCycle": N_("timer_kind.cycle"), "CycleTimerEventDefinition": N_("timer_kind.cycle"),
    "StartCycle": N_("timer_kind.start_cycle")}
PREFERENCE_LABELS = {"immediate": N_("pref_immediate"), "digest": N_("pref_digest"),
                     "off": N_("pref_off")}
# the rules by which the engine refuses an action (engine.errors.Forbidden.rule): their
# message codes, said to the person refused with the refusal's details as params
REFUSALS = {
    "claimed_by_another": N_("refused.claimed_by_another"),
    "candidates_only": N_("refused.candidates_only"),
    "assignee_or_administrators": N_("refused.assignee_or_administrators"),
    "administrators_only": N_("refused.administrators_only"),
    "own_units_only": N_("refused.own_units_only"),
    "members_only": N_("refused.members_only"),
    "message_sender": N_("refused.message_sender"),
    # a process's own start rule (nd73:startRule): its words come from the definition
    "start_rule": N_("refused.start_rule")}


def choose_language() -> str:
    """Vietnamese unless the person switched to English (kept in the session)."""
    chosen = session.get("lang")
    return chosen if chosen in LANGUAGES else "vi"


def lang() -> str:
    return getattr(g, "lang", "vi")


def t(key: str, **params) -> str:
    """The words of a message id in the page's language, from the catalogues."""
    return catalogues.text(key, **params)


def say(code: str | None, params: dict | None = None) -> str | None:
    """A message code with its params in the page's language; None when unknown."""
    return catalogues.say(code, params)


def error_text(exc) -> str:
    """An engine error for a page: its message code in words; English only on English
    pages (the code-less errors are a designer's or a developer's)."""
    said = catalogues.say_error(exc)
    if said is not None:
        return said
    return exc.message if lang() == "en" else t("error_without_words")


def refusal(exc) -> str:
    """Why the engine refused (a :class:`~engine.errors.Forbidden`), in the page's language:
    its rule is its message code (``refused.<rule>``)."""
    return error_text(exc)


def label(pair_or_text, english: str | None = None) -> str:
    """A schema title and its ``x-title-en`` (or a (vi, en) pair) in the page's language:
    the words of a process's own forms, written by its designer."""
    if isinstance(pair_or_text, tuple):
        pair_or_text, english = pair_or_text
    return (english or pair_or_text) if lang() == "en" else pair_or_text


def _vocabulary(labels: dict[str, str], value: str | None, unknown: str | None = None) -> str:
    if not value:
        return ""
    if value in labels:
        return t(labels[value])
    return t(unknown, value=value) if unknown else value     # a name a designer chose


def stage_label(stage: str | None) -> str:
    """How the variants name a business stage (their ``[stages]`` settings), in the page's
    language; a stage no variant names is shown as it is."""
    if not stage:
        return ""
    spec = current_app.extensions["nd73"].repository.stage_labels().get(stage) or {}
    return (spec.get("label_en") if lang() == "en" else None) or spec.get("label") or stage


def action_label(action: str) -> str:
    return _vocabulary(ACTION_LABELS, action, N_("event.other"))


def status_label(status: str | None, kind: str = "instance") -> str:
    return _vocabulary(STATUS_LABELS[kind], status, N_("status.other"))


def timer_kind_label(kind: str | None) -> str:
    return _vocabulary(TIMER_KINDS, kind, N_("timer_kind.other"))


def preference_label(mode: str) -> str:
    return _vocabulary(PREFERENCE_LABELS, mode)


@overload
def local(value: datetime) -> datetime: ...
@overload
def local(value: None) -> None: ...
def local(value: datetime | None) -> datetime | None:
    return as_utc(value).astimezone(LOCAL_TZ) if value is not None else None


def format_date(value) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, datetime):
        return local(value).strftime("%d/%m/%Y")
    if isinstance(value, date):
        return value.strftime("%d/%m/%Y")
    try:
        return date.fromisoformat(str(value)).strftime("%d/%m/%Y")
    except ValueError:
        return str(value)


def format_datetime(value: datetime | None) -> str:
    return local(value).strftime("%d/%m/%Y %H:%M") if value is not None else ""


def format_money(value) -> str:
    """1234567 → ``1.234.567 ₫`` (Vietnamese groups thousands with dots)."""
    if value is None or value == "":
        return ""
    return f"{int(value):,}".replace(",", ".") + " ₫"


def compact_json(value) -> str:
    """Data as people read it: one line, Vietnamese letters as they are."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
