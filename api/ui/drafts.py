"""Designers' pages of a variant's draft (engine/drafts.py): its files, the folder as a zip
(download, upload), what deploying it would change, the explicit deployment; and the
settings editor (variant.toml as a form, or as TOML text or an uploaded .toml), checked as
deployment checks settings with each problem next to its field. The engine checks the
designer's right on every call."""
from __future__ import annotations

import copy
import hashlib
import re
import threading
import tomllib
from collections import OrderedDict

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for

from engine import drafts as drafting
from engine.errors import N_, DefinitionInvalid, EngineError
from engine.variants import SETTINGS_FILE, UNCONFIRMED

from ..routes.drafts import zip_response
from ..routes.dryrun import failing_scripts, variant_folder
from .i18n import error_text, say, t
from .web import engine, principal, signed_in

blp = Blueprint("drafts_ui", __name__, template_folder="templates")
# settings the form does not draw field by field (lists of tables): edited as TOML text
TABLE_LISTS = ("figures",)
# the words of the settings' sections the national variant declares (a section without
# words is shown by its key); sections are listed in the order of the file
_SECTION_IDS = (N_("settings_section.deadlines"), N_("settings_section.calendar"),
                N_("settings_section.routing"), N_("settings_section.council"),
                N_("settings_section.reporting"), N_("settings_section.half_year_reporting"),
                N_("settings_section.multi_year_reporting"), N_("settings_section.eligible"),
                N_("settings_section.documents"), N_("settings_section.roles"),
                N_("settings_section.stages"), N_("settings_section.schedules"))


def problem_words(problem) -> str:
    return say(problem.code, problem.params) or problem.message


def _problems(exc: DefinitionInvalid) -> list[dict]:
    return [{"file": p.file, "element_id": p.element_id, "line": p.line,
             "text": problem_words(p)} for p in exc.problems]


def _revision() -> int | None:
    text = request.form.get("revision") or ""
    return int(text) if text.isdigit() else None


# --- the draft's page ---------------------------------------------------------------------

# The kept scripts' outcome on a draft, by what it was played on (the draft's files, the
# variant's deployed versions, the scripts): the page plays them again only when one of those
# changed or the designer asks (*Chạy lại*), not at every load. Kept by the app, per process.
DRY_RUNS = "nd73.draft_dry_runs"
KEPT_DRY_RUNS = 32
_dry_runs_lock = threading.Lock()


def _played_on(variant: str, files: dict[str, bytes]) -> str:
    digest = hashlib.sha256(variant.encode())
    for path, content in sorted(files.items()):
        digest.update(b"\0file\0" + path.encode() + b"\0" + hashlib.sha256(content).digest())
    for definition in engine().repository.latest_versions(variant):
        digest.update(f"\0deployed\0{definition.id}".encode())
    for script in sorted((variant_folder(variant) / "dryrun").glob("*.toml")):
        digest.update(b"\0script\0" + script.name.encode() + b"\0" + script.read_bytes())
    return digest.hexdigest()


def draft_dry_runs(variant: str, files: dict[str, bytes], again: bool = False) -> list[dict]:
    """The kept scripts' failures on the draft (``failing_scripts``), played once per
    draft content and deployed versions; ``again``: played anew."""
    key = _played_on(variant, files)
    with _dry_runs_lock:
        kept = current_app.extensions.setdefault(DRY_RUNS, OrderedDict())
        found = None if again else kept.get(key)
    if found is not None:
        return copy.deepcopy(found)
    warnings = failing_scripts(variant, principal())
    with _dry_runs_lock:
        kept[key] = copy.deepcopy(warnings)
        kept.move_to_end(key)
        while len(kept) > KEPT_DRY_RUNS:
            kept.popitem(last=False)
    return warnings


@blp.route("/designer/<string:variant>/draft")
@signed_in
def page(variant):
    drafts = engine().drafts
    draft = drafts.get(variant, principal())
    changes = problems = warnings = None
    if draft is not None:
        try:
            changes = drafts.changes(variant, principal())
            drafts.validate(variant, principal())
            problems = []
        except DefinitionInvalid as exc:
            problems = _problems(exc)
        if problems == [] and not changes.empty:
            # the scripts kept with the variant, played on the draft before it is deployed:
            # a failure warns (the designer may still deploy); played again only when the
            # draft (or what is deployed) changed, or when asked
            warnings = draft_dry_runs(variant, draft.files, request.args.get("rerun") == "1")
    return render_template("draft.html", variant=variant, draft=draft, changes=changes,
                           problems=problems, warnings=warnings,
                           next=request.args.get("next", ""))


@blp.route("/designer/<string:variant>/draft", methods=["POST"])
@signed_in
def act(variant):
    drafts, who, action = engine().drafts, principal(), request.form.get("action")
    target = url_for("drafts_ui.page", variant=variant)
    try:
        if action == "open":
            drafts.open(variant, who)
        elif action == "discard":
            drafts.discard(variant, who)
            flash(t("draft_discarded"), "success")
        elif action == "upload":
            upload = request.files.get("file")
            if upload is None or not upload.filename:
                flash(t("org_no_file"), "error")
            elif upload.filename.endswith(".toml"):
                drafts.put_file(variant, SETTINGS_FILE, upload.read(), who, _revision())
                flash(t("draft_saved"), "success")
            else:
                drafts.require_designer(variant, who)
                drafts.save(variant, drafting.from_zip(upload.read()), who, _revision())
                flash(t("draft_saved"), "success")
        elif action == "deploy":
            results = drafts.deploy(variant, who, _revision())
            created = [f"{r.key} v{r.version}" for r in results if r.created]
            flash(t("draft_deployed", processes=", ".join(created)) if created
                  else t("unchanged"), "success")
            back = request.form.get("next") or ""
            # back to the page the designer came from (a modeler), only within this site
            if re.fullmatch(r"/designer/[\w.-]+/[\w.-]+", back):
                return redirect(back + "?deployed=1")
            return redirect(url_for("designer.variants"))
    except DefinitionInvalid as exc:
        for problem in _problems(exc)[:20]:
            flash(f"{problem['file']}: {problem['text']}", "error")
    except EngineError as exc:
        flash(error_text(exc), "error")
    return redirect(target)


@blp.route("/designer/<string:variant>/draft.zip")
@signed_in
def download_draft(variant):
    draft = engine().drafts.get(variant, principal())
    if draft is None:
        return zip_response(engine().drafts.deployed_folder(variant, principal()), variant)
    return zip_response(draft.files, f"{variant}-nhap-{draft.revision}")


@blp.route("/designer/<string:variant>/deployed.zip")
@signed_in
def download_deployed(variant):
    return zip_response(engine().drafts.deployed_folder(variant, principal()), variant)


# --- the settings editor --------------------------------------------------------------------

def _leaves(value, prefix: str = "") -> list[tuple[str, object]]:
    """(dotted key, value) of every setting a form field edits: numbers, text, yes/no and
    lists of them, at any depth; lists of tables (figures) are left to the TOML text."""
    found = []
    for key, inner in value.items():
        name = f"{prefix}{key}"
        if isinstance(inner, dict):
            found += _leaves(inner, name + ".")
        elif isinstance(inner, list) and any(isinstance(i, (dict, list)) for i in inner):
            continue
        else:
            found.append((name, inner))
    return found


def _kind(value) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, list):
        return "list"
    return "text"


def _sections(settings: dict) -> list[tuple[str, str, list[dict]]]:
    """(section, its name on the page, its fields) of the settings a form edits."""
    editable = {k: v for k, v in settings.items()
                if isinstance(v, dict) and k != UNCONFIRMED and k not in TABLE_LISTS}
    sections = []
    for section in editable:
        fields = []
        for key, value in _leaves(editable[section], section + "."):
            kind = _kind(value)
            items = value if isinstance(value, list) else []
            shown = "\n".join(str(v) for v in items) if kind == "list" else value
            fields.append({"key": key, "kind": kind, "value": shown,
                           "numbers": bool(items) and all(
                               isinstance(v, int) and not isinstance(v, bool) for v in items)})
        words = say(f"settings_section.{section}") or section
        sections.append((section, words, fields))
    top = [{"key": k, "kind": _kind(v), "value": v, "numbers": False}
           for k, v in settings.items() if k not in ("name", UNCONFIRMED)
           and not isinstance(v, (dict, list))]
    return ([("", t("settings_general"), top)] if top else []) + sections


def _set(settings: dict, key: str, value) -> None:
    *path, last = key.split(".")
    node = settings
    for part in path:
        node = node.setdefault(part, {})
    node[last] = value


def _read_field(field: dict, form) -> tuple[object, str | None]:
    """The value a form field gives, or an error in the page's words."""
    key, kind = field["key"], field["kind"]
    raw = (form.get(key) or "").strip()
    if kind == "bool":
        return "1" in form.getlist(key), None       # a hidden "0" comes before the box
    if kind == "int":
        if not re.fullmatch(r"-?\d{1,9}", raw):
            return None, t("settings_whole_number")
        return int(raw), None
    if kind == "float":
        try:
            return float(raw.replace(",", ".")), None
        except ValueError:
            return None, t("settings_number")
    if kind == "list":
        items = [line.strip() for line in raw.splitlines() if line.strip()]
        if field["numbers"]:
            if not all(re.fullmatch(r"-?\d{1,9}", i) for i in items):
                return None, t("settings_whole_numbers")
            return [int(i) for i in items], None
        return items, None
    return raw, None


def _settings_page(variant, draft, text: str, settings: dict, errors: dict, status=200,
                   general: list | None = None):
    marks = settings.get(UNCONFIRMED) or {}
    sections = _sections(settings)
    keys = {f["key"] for _, _, fields in sections for f in fields}
    # a problem of no one field (a role's table, a figure) is said above the form
    general = [*(general or []), *(f"{SETTINGS_FILE}: {key}: {words}"
                                  for key, words in errors.items() if key not in keys)]
    return render_template("draft_settings.html", variant=variant, draft=draft, text=text,
                           sections=sections, errors=errors, marks=marks,
                           general=general), status


def _field_errors(exc: DefinitionInvalid, variant: str) -> tuple[dict, list]:
    """Problems of the settings by field (``deadlines.decision``), the others apart."""
    prefix = f"{variant}/{SETTINGS_FILE}: "
    errors: dict[str, str] = {}
    general = []
    for problem in exc.problems:
        if problem.file.startswith(prefix):
            key = problem.file[len(prefix):]
            errors[key] = problem_words(problem)
        else:
            general.append(f"{problem.file}: {problem_words(problem)}")
    return errors, general


@blp.route("/designer/<string:variant>/settings")
@signed_in
def settings(variant):
    drafts = engine().drafts
    draft = drafts.get(variant, principal())
    files = draft.files if draft is not None else drafts.deployed_folder(variant, principal())
    text = files[SETTINGS_FILE].decode("utf-8")
    return _settings_page(variant, draft, text, drafts.settings_of(variant, files), {})


@blp.route("/designer/<string:variant>/settings", methods=["POST"])
@signed_in
def save_settings(variant):
    drafts, who = engine().drafts, principal()
    draft = drafts.get(variant, who)
    files = draft.files if draft is not None else drafts.deployed_folder(variant, who)
    current = drafts.settings_of(variant, files)
    upload = request.files.get("file")
    if upload is not None and upload.filename:
        content = upload.read()
    elif request.form.get("mode") == "text":
        content = (request.form.get("text") or "").encode("utf-8")
    else:
        errors: dict[str, str] = {}
        edited = copy.deepcopy(current)
        for _, _, fields in _sections(current):
            for field in fields:
                value, error = _read_field(field, request.form)
                if error:
                    errors[field["key"]] = error
                else:
                    _set(edited, field["key"], value)
        confirmed = request.form.getlist("confirm")
        marks = edited.get(UNCONFIRMED) or {}
        for key in confirmed:
            marks.pop(key, None)
        if not marks:
            edited.pop(UNCONFIRMED, None)
        if errors:
            return _settings_page(variant, draft, files[SETTINGS_FILE].decode("utf-8"),
                                  current, errors, 422)
        content = drafting.settings_toml(edited)
    try:
        drafts.put_file(variant, SETTINGS_FILE, content, who, _revision())
    except DefinitionInvalid as exc:
        errors, general = _field_errors(exc, variant)
        try:
            shown = drafts.settings_of(variant, {SETTINGS_FILE: content}) if not errors \
                else _lenient(content, current)
        except (DefinitionInvalid, ValueError):
            shown = current
        return _settings_page(variant, draft, content.decode("utf-8", "replace"), shown,
                              errors, 422, general)
    except EngineError as exc:
        flash(error_text(exc), "error")
        return redirect(url_for("drafts_ui.settings", variant=variant))
    flash(t("draft_saved"), "success")
    return redirect(url_for("drafts_ui.settings", variant=variant))


def _lenient(content: bytes, fallback: dict) -> dict:
    """The values the designer typed, unchecked, to show them again beside their errors."""
    try:
        own = tomllib.loads(content.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        return fallback
    merged = copy.deepcopy(fallback)
    for key, value in _leaves(own):
        if not key.startswith(UNCONFIRMED + "."):
            _set(merged, key, value)
    return merged
