"""The form builder of the designer studio: a designer of a variant opens a form that the
variant's processes use, edits its fields (api/ui/form_schema.py), sees it drawn by the
renderer officials get (the same ``_form.html`` macro, server-side, from the edited schema) and
saves the variant's own copy into the variant's draft (engine/drafts.py).

Saving checks the form as deployment checks it, naming the field, and puts it in the draft
(``forms/<name>``); nothing goes live. Deploying is the draft's explicit step (its page shows
what changes and plays the variant's dry-run scripts first): the processes of the variant
that use the form then get a new version, running cases stay on theirs, and no other variant
— nor the national file — changes. The builder opens the draft's copy when there is one.
"""
from __future__ import annotations

import json

from flask import Blueprint, Response, jsonify, render_template, request, url_for

from engine import policy
from engine.errors import Conflict, DefinitionInvalid, N_
from engine.store import Definition

from ..problems import ApiProblem
from . import form_fields, form_schema
from .designer import _require_designer
from .i18n import say, t
from .web import engine, principal, signed_in

blp = Blueprint("form_builder", __name__, template_folder="templates")
FORM_SUFFIX = ".schema.json"
MAX_FIELDS = 200


def deployed_forms(variant: str) -> dict[str, tuple[Definition, list[str]]]:
    """The forms the variant's latest processes use: name → (the newest definition that
    carries it, the keys of the processes using it)."""
    found: dict[str, tuple[Definition, list[str]]] = {}
    for definition in engine().repository.latest_versions(variant):
        for source in definition.sources:
            if not source.startswith("forms/"):
                continue
            name = source[len("forms/"):]
            newest, users = found.get(name, (definition, []))
            if definition.id > newest.id:
                newest = definition
            found[name] = (newest, [*users, definition.key])
    return dict(sorted(found.items()))


def _form(variant: str, name: str) -> dict:
    _require_designer(variant)
    forms = deployed_forms(variant)
    if name not in forms:
        raise ApiProblem("not-found", f"no process of '{variant}' uses the form '{name}'",
                         code="builder.form_not_found", params={"form": name})
    draft = engine().drafts.get(variant, principal())
    if draft is not None and f"forms/{name}" in draft.files:      # the copy being edited
        return json.loads(draft.files[f"forms/{name}"])
    definition, _ = forms[name]
    return json.loads(definition.sources[f"forms/{name}"])


@blp.route("/designer/<string:variant>/forms")
@signed_in
def forms(variant):
    _require_designer(variant)
    return render_template("form_builder_index.html", variant=variant,
                           forms=deployed_forms(variant))


@blp.route("/designer/<string:variant>/forms/<string:name>")
@signed_in
def builder(variant, name):
    schema = _form(variant, name)
    draft = engine().drafts.get(variant, principal())
    kinds = [(kind, t(form_schema.KIND_LABELS[kind])) for kind in form_schema.KINDS]
    data = {"variant": variant, "form": name, "fields": form_schema.fields_of(schema),
            "kinds": dict(kinds), "row_kinds": list(form_schema.ROW_KINDS),
            "preview": f"/designer/{variant}/forms/{name}/preview",
            "save": f"/designer/{variant}/forms/{name}",
            # the draft's revision this page read (0: none yet), sent back with the save
            "revision": draft.revision if draft is not None else 0,
            "words": {key: t(f"builder.{key}") for key in WORDS}}
    return render_template("form_builder.html", variant=variant, name=name, schema=schema,
                           kinds=kinds, data=data,
                           fields=_preview_fields(variant, schema))


@blp.route("/designer/<string:variant>/forms/<string:name>/file")
@signed_in
def download(variant, name):
    """The variant's form as a file, to keep in its folder (``forms/<variant>/<file>``)."""
    content = form_schema.dumps(_form(variant, name))
    return Response(content, mimetype="application/json",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


# what the page's script says (builder.<key> in the catalogues)
WORDS = ("key", "kind", "required", "label", "label_en", "choices", "choice_value",
         "choice_label", "choice_label_en", "add_choice", "pattern", "min", "max", "up", "down",
         "remove", "add_field", "saved", "unchanged", "refused", "new_field", "kept_kind",
         "columns", "add_column", "to_draft")
_WORD_IDS = [N_("builder.key"), N_("builder.kind"), N_("builder.required"),
             N_("builder.label"), N_("builder.label_en"), N_("builder.choices"),
             N_("builder.choice_value"), N_("builder.choice_label"),
             N_("builder.choice_label_en"), N_("builder.add_choice"), N_("builder.pattern"),
             N_("builder.min"), N_("builder.max"), N_("builder.up"), N_("builder.down"),
             N_("builder.remove"), N_("builder.add_field"), N_("builder.saved"),
             N_("builder.unchanged"), N_("builder.refused"), N_("builder.new_field"),
             N_("builder.kept_kind"), N_("builder.columns"), N_("builder.add_column"),
             N_("builder.to_draft")]


def fields_in_use(variant: str, name: str) -> dict[str, str]:
    """The fields of the form that the variant's processes name on the steps showing it
    (decision fields, the case's decision field, form rules): field → ``process/element``.
    Deployment does not look into forms for them, but a step whose decision field is gone
    records nothing and the conditions reading it fail, so the builder keeps them."""
    repository = engine().repository
    used: dict[str, str] = {}
    for definition in repository.latest_versions(variant):
        if f"forms/{name}" not in definition.sources:
            continue
        spec, subprocesses = repository.specs(definition)
        for process in (spec, *(subprocesses or {}).values()):
            for task_spec in process.task_specs.values():
                if policy.element_properties(task_spec).get("form") != name:
                    continue
                element = f"{definition.key}/{task_spec.name}"
                for field in (*policy.decision_fields(task_spec),
                              policy.case_decision_field(task_spec),
                              *(rule.field for rule in policy.validations(task_spec))):
                    if field:
                        used.setdefault(field.split(".")[0], element)
    return used


def _checked_schema(variant: str, name: str) -> dict:
    """The posted fields as the form's schema, or FormProblems."""
    schema = form_schema.schema_of(_form(variant, name), _posted_fields())
    gone = [(field, element) for field, element in fields_in_use(variant, name).items()
            if field not in (schema.get("properties") or {})]
    if gone:
        raise form_schema.FormProblems([
            {"field": field, "code": N_("builder.field_in_use"),
             "params": {"field": field, "element": element}} for field, element in gone])
    return schema


def _preview_fields(variant: str, schema: dict) -> list[form_fields.Field]:
    """The form as officials get it: its unit fields offer the variant's units."""
    units = engine().org.unit_directory(variant) if form_fields.kinds(
        form_fields.build(schema, {})) & {"unit", "units"} else []
    return form_fields.build(schema, {}, units=units)


def _posted_revision() -> int | None:
    """The draft's revision the page read (0: there was no draft), None if not sent."""
    body = request.get_json(silent=True)
    revision = body.get("revision") if isinstance(body, dict) else None
    return revision if isinstance(revision, int) and not isinstance(revision, bool) \
        and revision >= 0 else None


def _posted_fields() -> list[dict]:
    body = request.get_json(silent=True)
    fields = body.get("fields") if isinstance(body, dict) else None
    if not isinstance(fields, list) or len(fields) > MAX_FIELDS \
            or not all(isinstance(f, dict) for f in fields):
        raise form_schema.FormProblems([{"field": "(form)", "code": N_("builder.unreadable"),
                                         "params": {"field": "(form)"}}])
    return [_clean(f) for f in fields]


def _clean(field: dict, nested: bool = False) -> dict:
    """A posted field with the types the model expects (what a page sends is untrusted)."""
    def text(name):
        value = field.get(name)
        return value if isinstance(value, str) else ""

    def limit(name):
        value = field.get(name)
        return None if value in (None, "") else value

    posted = field.get("choices")
    choices: list = posted if isinstance(posted, list) else []
    return {"key": text("key"), "origin": text("origin") or None, "kind": text("kind"),
            "required": field.get("required") is True, "label": text("label"),
            "label_en": text("label_en"), "pattern": text("pattern"),
            "min": limit("min"), "max": limit("max"),
            "choices": [{"value": str(c.get("value") or ""), "label": str(c.get("label") or ""),
                         "label_en": str(c.get("label_en") or "")}
                        for c in choices if isinstance(c, dict)],
            "columns": [] if nested or not isinstance(field.get("columns"), list) else
            [_clean(c, nested=True) for c in field["columns"][:MAX_FIELDS]
             if isinstance(c, dict)]}


def _said(problems: list[dict]) -> list[dict]:
    return [{**p, "message": say(p["code"], p["params"]) or p["code"]} for p in problems]


@blp.route("/designer/<string:variant>/forms/<string:name>/preview", methods=["POST"])
@signed_in
def preview(variant, name):
    """The draft schema drawn by the officials' renderer, or the fields it cannot have
    (``valid`` false: a check asked while typing, answered like ``definitions/check-code``)."""
    try:
        schema = _checked_schema(variant, name)
    except form_schema.FormProblems as refused:
        return jsonify(valid=False, problems=_said(refused.problems))
    html = render_template("_form_preview.html", fields=_preview_fields(variant, schema))
    return jsonify(valid=True, html=html, problems=[], schema=schema)


@blp.route("/designer/<string:variant>/forms/<string:name>", methods=["POST"])
@signed_in
def save(variant, name):
    """Save the variant's own copy of the form into its draft, checked as deployment checks
    it; ``changed`` is false when the draft already had it so. Deploying is the draft's.
    The page sends the draft's revision it read: a colleague's save since is refused (409
    naming the form) rather than overwritten."""
    try:
        schema = _checked_schema(variant, name)
    except form_schema.FormProblems as refused:
        return jsonify(problems=_said(refused.problems)), 422
    content = form_schema.dumps(schema).encode()
    drafts, who, path = engine().drafts, principal(), f"forms/{name}"
    draft = drafts.get(variant, who)
    before = draft.files.get(path) if draft is not None \
        else drafts.deployed_folder(variant, who).get(path)
    changed = content != before
    if changed:
        try:
            draft = drafts.put_file(variant, path, content, who, _posted_revision())
        except Conflict as exc:
            params = {**(exc.params or {}), "field": "(form)", "form": name}
            return jsonify(problems=_said([{"field": "(form)", "code": N_("builder.conflict"),
                                            "params": params}])), 409
        except DefinitionInvalid as exc:
            problems = [{"field": "(form)", "code": p.code or "bpmn.other",
                         "params": {**(p.params or {}), "field": "(form)"}}
                        for p in exc.problems]
            return jsonify(problems=_said(problems)), 422
    return jsonify(changed=changed, revision=draft.revision if draft is not None else None,
                   draft=url_for("drafts_ui.page", variant=variant), problems=[])
