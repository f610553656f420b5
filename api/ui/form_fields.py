"""A task's JSON Schema turned into HTML form fields, and posted form fields turned back into
the JSON the engine validates.

Field names are dotted paths (``report.summary``, ``attachments``), the same paths the
engine's field errors name, so each error lands next to its field.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date

from werkzeug.datastructures import MultiDict

from engine.errors import N_

from .i18n import format_date, label, lang, say, t

MISSING = object()
_DATE_DMY = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$")


@dataclass
class Field:
    path: str
    kind: str            # text textarea select date integer number money boolean confirm
    #                      choices list files group rows person people unit units
    label: str
    required: bool = False
    value: object = None
    options: list[tuple[str, str]] = field(default_factory=list)
    children: list["Field"] = field(default_factory=list)
    error: str | None = None
    limits: dict = field(default_factory=dict)

    @property
    def dom_id(self) -> str:
        return "f-" + self.path.replace(".", "-")


def _title(prop: dict, name: str) -> str:
    return label(prop.get("title") or name, prop.get("x-title-en"))


def _options(prop: dict) -> list[tuple[str, str]]:
    labels = prop.get("x-enum-labels") or {}
    labels_en = prop.get("x-enum-labels-en") or {}
    return [(str(v), (labels_en.get(v) if lang() == "en" else None) or labels.get(v) or str(v))
            for v in prop.get("enum", [])]


def _kind(prop: dict) -> str:
    kind, widget = prop.get("type"), prop.get("x-widget")
    if kind == "object":
        return "group"
    if kind == "array":
        items = prop.get("items") or {}
        if items.get("type") == "object" and "file_id" in (items.get("properties") or {}):
            return "files"
        if widget == "person" or items.get("x-widget") == "person":
            return "people"          # usernames chosen from the organisation
        if widget == "unit" or items.get("x-widget") == "unit":
            return "units"           # unit ids chosen from the organisation
        if items.get("type") == "object":
            return "rows"
        return "choices" if "enum" in items else "list"
    if kind == "boolean":
        return "confirm" if prop.get("const") is True else "boolean"
    if "enum" in prop:
        return "select"
    if kind == "integer":
        return "money" if widget == "money" else "integer"
    if kind == "number":
        return "number"
    if prop.get("format") == "date":
        return "date"
    if widget == "person":
        return "person"
    if widget == "unit":
        return "unit"
    return "textarea" if widget == "textarea" else "text"


def build(schema: dict, data: dict, errors: dict[str, str] | None = None,
          raw: MultiDict | None = None,
          units: list[tuple[str, str, int]] | None = None) -> list[Field]:
    """Fields of a form, filled from ``data`` (or from what was posted, after an error).
    Unit fields offer ``units`` ((id, name, depth) in the tree's order), by name."""
    offered = [(unit_id, "\u00a0\u00a0" * depth + name) for unit_id, name, depth in units or []]
    return _fields(schema, "", data or {}, errors or {}, raw, offered)


def kinds(fields: list[Field]) -> set[str]:
    """The kinds of ``fields`` and of the fields inside them (a group's, a row's cells)."""
    found: set[str] = set()
    for f in fields:
        found.add(f.kind)
        found |= kinds(f.children)
    return found


def _fields(schema: dict, prefix: str, data: dict, errors: dict, raw,
            units: list[tuple[str, str]]) -> list[Field]:
    required = set(schema.get("required", []))
    fields = []
    for name, prop in (schema.get("properties") or {}).items():
        path = f"{prefix}{name}"
        kind = _kind(prop)
        value = data.get(name) if isinstance(data, dict) else None
        item = Field(path, kind, _title(prop, name), name in required,
                     error=errors.get(path),
                     limits={k: prop[k] for k in ("minimum", "maximum", "minLength",
                                                  "maxLength") if k in prop})
        if kind == "group":
            item.children = _fields(prop, path + ".", value or {}, errors, raw, units)
        elif kind == "choices":
            item.options = _options(prop["items"] | {
                "x-enum-labels": prop.get("x-enum-labels", {}),
                "x-enum-labels-en": prop.get("x-enum-labels-en", {})})
            item.value = raw.getlist(path) if raw is not None else list(value or [])
        elif kind in ("list", "people", "units"):
            item.value = raw.getlist(path) if raw is not None else list(value or [])
            if kind == "units":
                item.options = _with_unknown(units, item.value)
        elif kind == "files":
            item.value = value if isinstance(value, list) else []
        elif kind == "rows":
            item.children = _fields(prop["items"], path + ".", {}, {}, None,   # an empty row
                                    units)
            item.value = [_fields(prop["items"], path + ".", row, _row_errors(errors, path, n),
                                  typed, units) for n, (row, typed) in
                          enumerate(_rows_shown(prop, path, value, raw))]
        else:
            item.options = _options(prop)
            item.value = raw.get(path, "") if raw is not None else _shown(kind, value)
            if kind == "unit":
                item.options = _with_unknown(units, [item.value])
        fields.append(item)
    return fields


def _with_unknown(units: list[tuple[str, str]], values) -> list[tuple[str, str]]:
    """The units offered, and any value given that is none of them (as its id, which the
    engine then refuses, naming it), so that nothing typed is lost."""
    ids = {unit_id for unit_id, _ in units}
    return units + [(str(v), str(v)) for v in dict.fromkeys(values or [])
                    if v and str(v) not in ids]


# Rows of several fields (an array of objects): the inputs of a column share one name
# (``member_assessments.member``), so a row added in the page is a copy of the last one; row n
# is the n-th value of each column, and the engine's errors of a cell
# (``member_assessments.2.member``) are shown in its row.

def _rows_shown(prop: dict, path: str, value, raw) -> list[tuple[dict, MultiDict | None]]:
    """Each row's data, or (after a refusal) its cells as they were typed."""
    if raw is not None:
        return [({}, MultiDict({f"{path}.{name}": text for name, text in row.items()}))
                for row in _posted_rows(prop, path, raw)]
    return [(row, None) for row in (value if isinstance(value, list) else [])
            if isinstance(row, dict)]


def _posted_rows(prop: dict, path: str, form) -> list[dict]:
    """The rows posted, their cells as typed; rows left empty are dropped."""
    names = list((prop["items"].get("properties") or {}))
    columns = {name: form.getlist(f"{path}.{name}") for name in names}
    count = max((len(values) for values in columns.values()), default=0)
    rows = [{name: (columns[name][n] if n < len(columns[name]) else "").strip()
             for name in names} for n in range(count)]
    return [row for row in rows if any(row.values())]


def _row_errors(errors: dict, path: str, number: int) -> dict:
    prefix = f"{path}.{number}."
    return {f"{path}.{key[len(prefix):]}": message for key, message in errors.items()
            if key.startswith(prefix)}


def _shown(kind: str, value) -> object:
    if value is None:
        return ""
    if kind == "date":
        return format_date(value)
    if kind == "money":
        return f"{int(value):,}".replace(",", ".") if isinstance(value, int) else value
    return value


# posted form → JSON ------------------------------------------------------------------------

def parse(schema: dict, form: MultiDict, stored_files: dict[str, list[dict]] | None = None
          ) -> tuple[dict, dict[str, str]]:
    """The data a posted form means, and the fields that could not even be read (such as
    31/02/2026): path → message code. Empty fields are left out, so the schema's
    ``required`` names them."""
    errors: dict[str, str] = {}
    data = _parse_object(schema, "", form, stored_files or {}, errors)
    return (data if data is not MISSING else {}), errors


def _parse_object(schema: dict, prefix: str, form, files, errors):
    out = {}
    for name, prop in (schema.get("properties") or {}).items():
        value = _parse_value(prop, f"{prefix}{name}", form, files, errors)
        if value is not MISSING:
            out[name] = value
    return out if out or not prefix else MISSING


def _parse_value(prop: dict, path: str, form, files, errors):
    kind = _kind(prop)
    if kind == "group":
        return _parse_object(prop, path + ".", form, files, errors)
    if kind in ("choices", "list", "people", "units"):
        values = [v.strip() for v in form.getlist(path) if v.strip()]
        return values if values or path in form else MISSING
    if kind == "files":
        kept = [{"name": n, "file_id": i} for i, n in
                (v.split("|", 1) for v in form.getlist(path + ".kept") if "|" in v)]
        return kept + files.get(path, []) or MISSING
    if kind == "rows":
        return _parse_rows(prop, path, form, errors)
    if kind in ("boolean", "confirm"):
        if kind == "boolean" and f"{path}.present" not in form and path not in form:
            return MISSING
        return form.get(path) in ("on", "true", "1")
    return _scalar(kind, (form.get(path) or "").strip(), path, errors)


def _parse_rows(prop: dict, path: str, form, errors):
    subs = prop["items"].get("properties") or {}
    rows = []
    for number, row in enumerate(_posted_rows(prop, path, form)):
        values = {name: _scalar(_kind(subs[name]), text, f"{path}.{number}.{name}", errors)
                  for name, text in row.items()}
        rows.append({name: value for name, value in values.items() if value is not MISSING})
    return rows or MISSING


def _scalar(kind: str, text: str, path: str, errors):
    """A typed text as the JSON value of its kind (the cell of a row, or a field)."""
    if not text:
        return MISSING
    try:
        if kind == "date":
            return parse_date(text)
        if kind in ("integer", "money"):
            return int(re.sub(r"[.\s,₫đ]", "", text) if kind == "money" else text)
        if kind == "number":
            return float(text.replace(",", "."))
    except ValueError:
        errors[path] = _unreadable(kind)
        return MISSING
    return text


def parse_date(text: str) -> str:
    """dd/mm/yyyy (or ISO) → ISO date; ValueError for impossible dates such as 31/02."""
    match = _DATE_DMY.match(text)
    if match:
        day, month, year = (int(g) for g in match.groups())
        return date(year, month, day).isoformat()     # ValueError for 31/02/2026
    return date.fromisoformat(text).isoformat()


def _unreadable(kind: str) -> str:
    return {"date": N_("form.unreadable_date"), "money": N_("form.unreadable_money"),
            "integer": N_("form.unreadable_integer")}.get(kind, N_("form.unreadable_number"))


def unreadable_messages(unreadable: dict[str, str]) -> dict[str, str]:
    """What :func:`parse` could not read → path → message in the page's language."""
    return {path: t(code) for path, code in unreadable.items()}


def field_messages(errors: list[dict]) -> dict[str, str]:
    """Engine field errors → path → message in the page's language: said from their message
    code, else (a process's own rules) the designer's words in the page's language."""
    english = lang() == "en"
    out: dict[str, str] = {}
    for error in errors:
        message = say(error.get("code"), error.get("params"))
        if message is None and error.get("code") and not english:
            message = t("error_without_words")      # its English sentence stays off the page
        elif message is None:
            message = (error.get("message_en") if english else None) or error.get("message")
        out.setdefault(error.get("field") or "(form)", message or "")
    return out


def files_fields(schema: dict, prefix: str = "") -> list[str]:
    """Paths of the attachment fields of a form."""
    paths = []
    for name, prop in (schema.get("properties") or {}).items():
        if _kind(prop) == "files":
            paths.append(prefix + name)
        elif _kind(prop) == "group":
            paths += files_fields(prop, f"{prefix}{name}.")
    return paths
