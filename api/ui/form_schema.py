"""The form builder's model of a task form: the JSON Schema of ``forms/*.schema.json`` as a
list of fields a designer edits (key, kind, required, Vietnamese and English labels, choices,
pattern, limits), and back, with the checks deployment makes named by field.

A field's kind is the widget the renderer (:mod:`api.ui.form_fields`) draws for it, so what
the builder offers is exactly what officials get. Keys of a property the builder does not edit
(``x-case-title``, ``uniqueItems``, a group's own fields…) are kept from the schema the field
came from (its ``origin``), so opening and saving a form changes only what was edited.
"""
from __future__ import annotations

import copy
import json
import re

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from engine.bpmn import MAX_PATTERN, unsafe_schema
from engine.errors import N_

from .form_fields import _kind

# the kinds a designer chooses among, as the renderer draws them
KINDS = ("text", "textarea", "integer", "number", "money", "date", "select", "choices",
         "boolean", "confirm", "list", "files", "rows")
# the kinds of a column of rows (one input per cell: api/ui/templates/_form.html's cell)
ROW_KINDS = ("text", "textarea", "integer", "number", "money", "date", "select")
# kinds the builder shows but whose inner structure it leaves as it is (a group of fields;
# a person or people, a unit or units chosen from the organisation, whose widget the form
# author set)
KEPT_KINDS = ("group", "person", "people", "unit", "units")
KIND_LABELS = {"text": N_("builder.kind.text"), "textarea": N_("builder.kind.textarea"),
               "integer": N_("builder.kind.integer"), "number": N_("builder.kind.number"),
               "money": N_("builder.kind.money"), "date": N_("builder.kind.date"),
               "select": N_("builder.kind.select"), "choices": N_("builder.kind.choices"),
               "boolean": N_("builder.kind.boolean"), "confirm": N_("builder.kind.confirm"),
               "list": N_("builder.kind.list"), "files": N_("builder.kind.files"),
               "group": N_("builder.kind.group"), "rows": N_("builder.kind.rows")}
# the keys of a property the builder writes; the others are kept
EDITED = {"type", "title", "x-title-en", "x-widget", "enum", "x-enum-labels",
          "x-enum-labels-en", "items", "format", "const", "pattern", "minimum", "maximum",
          "minLength", "maxLength", "minItems", "maxItems"}
# which limits "min"/"max" mean for a kind
LIMITS = {"text": ("minLength", "maxLength"), "textarea": ("minLength", "maxLength"),
          "integer": ("minimum", "maximum"), "number": ("minimum", "maximum"),
          "money": ("minimum", "maximum"), "choices": ("minItems", "maxItems"),
          "list": ("minItems", "maxItems"), "files": ("minItems", "maxItems"),
          "rows": ("minItems", "maxItems")}
WHOLE_LIMITS = {"minLength", "maxLength", "minItems", "maxItems"}
# a key is a variable of the process's data: scripts and conditions name it
KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# an attachment as the web app stores it (api/ui/attachments.py)
ATTACHMENT_ITEMS = {"type": "object", "required": ["name", "file_id"], "properties": {
    "name": {"type": "string", "title": "Tên tài liệu", "x-title-en": "Name", "maxLength": 255},
    "file_id": {"type": "string", "title": "Mã tệp", "x-title-en": "File id",
                "maxLength": 64}}}


class FormProblems(Exception):
    """The fields a form cannot be saved with: each ``{"field", "code", "params"}``."""

    def __init__(self, problems: list[dict]):
        super().__init__("; ".join(f"{p['field']}: {p['code']}" for p in problems))
        self.problems = problems


def _problem(field: str, code: str, **params) -> dict:
    return {"field": field, "code": code, "params": {"field": field, **params}}


# schema → fields ---------------------------------------------------------------------------

def fields_of(schema: dict) -> list[dict]:
    """The fields of a form's schema, in their order, as the builder edits them."""
    required = set(schema.get("required") or [])
    fields = []
    for key, prop in (schema.get("properties") or {}).items():
        kind = kind_of(prop)
        low, high = LIMITS.get(kind, (None, None))
        choices_of = (prop.get("items") or {}) if kind == "choices" else prop
        labels = prop.get("x-enum-labels") or choices_of.get("x-enum-labels") or {}
        labels_en = prop.get("x-enum-labels-en") or choices_of.get("x-enum-labels-en") or {}
        fields.append({
            "key": key, "origin": key, "kind": kind, "required": key in required,
            "label": prop.get("title") or "", "label_en": prop.get("x-title-en") or "",
            "choices": [{"value": str(v), "label": labels.get(v, ""),
                         "label_en": labels_en.get(v, "")}
                        for v in (choices_of.get("enum") or [])]
            if kind in ("select", "choices") else [],
            "pattern": prop.get("pattern", "") if kind in ("text", "textarea") else "",
            "min": prop.get(low) if low else None, "max": prop.get(high) if high else None,
            "columns": fields_of(prop["items"]) if kind == "rows" else []})
    return fields


def kind_of(prop: dict) -> str:
    """The builder's kind of a property: the one the renderer draws."""
    return _kind(prop)


# fields → schema ---------------------------------------------------------------------------

def schema_of(base: dict, fields: list[dict]) -> dict:
    """The schema ``base`` with its fields replaced by ``fields`` (in that order); raises
    :class:`FormProblems` naming each field that cannot be saved as it is."""
    originals = base.get("properties") or {}
    problems = field_problems(fields)
    if not problems:
        problems = _made_up_kept(fields, originals)
    if problems:
        raise FormProblems(problems)
    schema = copy.deepcopy(base)
    schema["properties"] = {f["key"]: _property(f, originals.get(f.get("origin") or ""))
                            for f in fields}
    schema["required"] = [f["key"] for f in fields if f.get("required")]
    if not schema["required"] and "required" not in base:    # an empty list the form had stays
        del schema["required"]
    problems = schema_problems(schema)
    if problems:
        raise FormProblems(problems)
    return schema


def _made_up_kept(fields: list[dict], originals: dict, prefix: str = "") -> list[dict]:
    """A kept kind (a group, a person) comes from the form, never made up by a page."""
    problems = []
    for f in fields:
        original = originals.get(f.get("origin") or "") or {}
        if f["kind"] in KEPT_KINDS and kind_of(original) != f["kind"]:
            problems.append(_problem(prefix + f["key"], N_("builder.kind_invalid"),
                                     kind=f["kind"]))
        elif f["kind"] == "rows":
            inner = ((original.get("items") or {}).get("properties") or {}) \
                if kind_of(original) == "rows" else {}
            problems += _made_up_kept(f.get("columns") or [], inner, f"{prefix}{f['key']}.")
    return problems


def _property(field: dict, original: dict | None) -> dict:
    kind = field["kind"]
    if kind in KEPT_KINDS:
        prop = copy.deepcopy(original or {})
        prop["title"] = field["label"].strip()
        _english(prop, field)
        return prop
    same = bool(original) and kind_of(original or {}) == kind
    # a list's or attachments' items stay as they were; a field whose type changed keeps only
    # the designer's notes (``x-case-title``, ``description``), not the old type's rules
    edited = EDITED - {"items"} if same and kind in ("list", "files") else EDITED
    prop = {k: copy.deepcopy(v) for k, v in (original or {}).items()
            if k not in edited and (same or k.startswith("x-") or k == "description")}
    prop["title"] = field["label"].strip()
    _english(prop, field)
    choices = field.get("choices") or []
    values = [c["value"].strip() for c in choices]
    labels = {c["value"].strip(): c["label"].strip() for c in choices if c["label"].strip()}
    labels_en = {c["value"].strip(): c["label_en"].strip() for c in choices
                 if c.get("label_en", "").strip()}
    if kind in ("text", "textarea", "date", "select"):
        prop["type"] = "string"
    if kind == "textarea":
        prop["x-widget"] = "textarea"
    elif kind == "date":
        prop["format"] = "date"
    elif kind == "select":
        prop["enum"] = values
    elif kind in ("integer", "money"):
        prop["type"] = "integer"
        if kind == "money":
            prop["x-widget"] = "money"
    elif kind == "number":
        prop["type"] = "number"
    elif kind in ("boolean", "confirm"):
        prop["type"] = "boolean"
        if kind == "confirm":
            prop["const"] = True
    elif kind == "choices":
        prop["type"] = "array"
        prop["items"] = {"type": "string", "enum": values}
        prop.setdefault("uniqueItems", True)
    elif kind == "list":
        prop["type"] = "array"
        prop.setdefault("items", {"type": "string", "maxLength": 500})
    elif kind == "files":
        prop["type"] = "array"
        prop.setdefault("items", copy.deepcopy(ATTACHMENT_ITEMS))
    elif kind == "rows":
        prop["type"] = "array"
        prop["items"] = _row_items(field.get("columns") or [], original)
    if kind in ("select", "choices"):
        if labels:
            prop["x-enum-labels"] = labels
        if labels_en:
            prop["x-enum-labels-en"] = labels_en
    if kind in ("text", "textarea") and (field.get("pattern") or "").strip():
        prop["pattern"] = field["pattern"].strip()
    low, high = LIMITS.get(kind, (None, None))
    for name, value in ((low, field.get("min")), (high, field.get("max"))):
        if name and value is not None:
            prop[name] = _number(value)
    return prop


def _row_items(columns: list[dict], original: dict | None) -> dict:
    """The object each row is: its columns, with what the builder does not edit kept."""
    before = (original or {}).get("items") if original and kind_of(original) == "rows" else {}
    items = {k: copy.deepcopy(v) for k, v in (before or {}).items()
             if k not in ("type", "properties", "required")}
    inner = (before or {}).get("properties") or {}
    items["type"] = "object"
    items["properties"] = {c["key"]: _property(c, inner.get(c.get("origin") or ""))
                           for c in columns}
    required = [c["key"] for c in columns if c.get("required")]
    if required:
        items["required"] = required
    return items


def _english(prop: dict, field: dict) -> None:
    english = (field.get("label_en") or "").strip()
    if english:
        prop["x-title-en"] = english
    else:
        prop.pop("x-title-en", None)


def _number(value):
    number = float(value)
    return int(number) if number.is_integer() else number


# checks ------------------------------------------------------------------------------------

def field_problems(fields: list[dict], prefix: str = "",
                   kinds: tuple[str, ...] = KINDS + KEPT_KINDS) -> list[dict]:
    """What is wrong with the fields as the designer set them, each named by its key (a
    column of rows by ``rows.column``; a field without a key by its place, ``#3``)."""
    problems: list[dict] = []
    seen: set[str] = set()
    for number, field in enumerate(fields, 1):
        key = str(field.get("key") or "").strip()
        name = prefix + (key or f"#{number}")
        if not KEY.match(key):
            problems.append(_problem(name, N_("builder.key_invalid")))
        elif key in seen:
            problems.append(_problem(name, N_("builder.key_duplicate")))
        seen.add(key)
        kind = field.get("kind")
        if kind not in kinds:
            problems.append(_problem(name, N_("builder.kind_invalid"), kind=str(kind)))
            continue
        if kind == "rows" and not field.get("columns"):
            problems.append(_problem(name, N_("builder.columns_missing")))
        elif kind == "rows":
            problems += field_problems(field["columns"], f"{name}.", ROW_KINDS + ("person", "unit"))
        if not str(field.get("label") or "").strip():
            problems.append(_problem(name, N_("builder.label_missing")))
        if kind in ("select", "choices"):
            problems += _choice_problems(name, field.get("choices") or [])
        pattern = str(field.get("pattern") or "").strip()
        if pattern and kind not in ("text", "textarea"):
            problems.append(_problem(name, N_("builder.pattern_not_text")))
        elif pattern:
            problems += _pattern_problems(name, pattern)
        problems += _limit_problems(name, kind, field.get("min"), field.get("max"))
    return problems


def _choice_problems(name: str, choices: list[dict]) -> list[dict]:
    values = [str(c.get("value") or "").strip() for c in choices]
    if not values:
        return [_problem(name, N_("builder.choices_missing"))]
    if "" in values:
        return [_problem(name, N_("builder.choice_empty"))]
    twice = sorted({v for v in values if values.count(v) > 1})
    return [_problem(name, N_("builder.choice_duplicate"), value=twice[0])] if twice else []


def _pattern_problems(name: str, pattern: str) -> list[dict]:
    if len(pattern) > MAX_PATTERN:
        return [_problem(name, N_("builder.pattern_long"), limit=MAX_PATTERN)]
    try:
        re.compile(pattern)
    except re.error as exc:
        return [_problem(name, N_("builder.pattern_invalid"), detail=str(exc))]
    if unsafe_schema({"pattern": pattern}):
        return [_problem(name, N_("builder.pattern_backtracks"), pattern=pattern)]
    return []


def _limit_problems(name: str, kind: str, low, high) -> list[dict]:
    names = LIMITS.get(kind)
    if names is None:
        given = [v for v in (low, high) if v not in (None, "")]
        return [_problem(name, N_("builder.limit_not_allowed"))] if given else []
    numbers: list[float | None] = []
    for limit, value in zip(names, (low, high)):
        if value is None:
            numbers.append(None)
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            return [_problem(name, N_("builder.limit_not_number"), value=str(value))]
        if isinstance(value, bool) or number != number or number in (float("inf"),
                                                                    float("-inf")):
            return [_problem(name, N_("builder.limit_not_number"), value=str(value))]
        if limit in WHOLE_LIMITS and (number < 0 or not number.is_integer()):
            return [_problem(name, N_("builder.limit_not_whole"), value=str(value))]
        numbers.append(number)
    low_number, high_number = numbers
    if low_number is not None and high_number is not None and low_number > high_number:
        return [_problem(name, N_("builder.limits_reversed"))]
    return []


def schema_problems(schema: dict) -> list[dict]:
    """The checks deployment makes on a form (engine/bpmn.py: a valid JSON Schema, no
    pattern that backtracks for ever, no ``$ref`` out of the document), named by field."""
    problems = []
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        path = [str(p) for p in exc.path]
        field = path[1] if len(path) > 1 and path[0] == "properties" else "(form)"
        problems.append(_problem(field, N_("builder.schema_invalid"), detail=exc.message))
    for key, prop in (schema.get("properties") or {}).items():
        problems += [_unsafe(key, detail) for detail in unsafe_schema(prop)]
    rest = {k: v for k, v in schema.items() if k != "properties"}
    problems += [_unsafe("(form)", detail) for detail in unsafe_schema(rest)]
    return problems


def _unsafe(field: str, detail: str) -> dict:
    """engine.bpmn's finding (English, for logs) said by its own message code."""
    if detail.startswith(("$ref", "$dynamicRef")):
        return _problem(field, N_("builder.ref_outside"), ref=detail.split(" ", 2)[1])
    if detail.startswith("pattern longer"):
        return _problem(field, N_("builder.pattern_long"), limit=MAX_PATTERN)
    if "repeats a repetition" in detail:
        return _problem(field, N_("builder.pattern_backtracks"), pattern="")
    return _problem(field, N_("builder.unsafe"), detail=detail)


def dumps(schema: dict) -> str:
    """A form's file as the project writes them: two-space indents, Vietnamese as is."""
    return json.dumps(schema, ensure_ascii=False, indent=2) + "\n"
