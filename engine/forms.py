"""Validation of submitted task data against the task's form (a JSON Schema).

Each refusal names the field and says what is wrong as a message ``code`` with its ``params``
(the web app and the API say it in the reader's language from the catalogues, e.g.
``form.min_length`` with ``{"limit": 10}``) and an English ``message`` for logs.

Besides JSON Schema, a form declares what only the engine can check:

- ``"x-widget": "person"`` on a text field (or a list of texts, or a property of a list's
  items): its values are usernames of people of the organisation (:func:`person_values`;
  the runtime refuses an unknown one, naming the field and the value);
- ``"x-widget": "unit"``, the same for units of the organisation (a department, a division,
  a commune…): its values are unit ids (:func:`unit_values`), refused when no unit of the
  process's variant has that id, and shown by the unit's name;
- ``"x-not-before"`` / ``"x-not-after"`` on a date field: another date field of the form (or
  of the step's data), or ``"today"`` (the engine clock's day): an end before its start, a
  completion in the future are refused (:func:`date_order_errors`); ``"x-after"`` /
  ``"x-before"`` the same, strictly: a deadline that must be after today (``"x-after":
  "today"``: today itself is refused) or after another date.
"""
from __future__ import annotations

from datetime import date
from functools import lru_cache
import json

from jsonschema import Draft202012Validator, FormatChecker

from .errors import N_

# the JSON type a field expects → what to ask for ("enter a whole number")
_TYPES = {"string": N_("form.type.string"), "integer": N_("form.type.integer"),
          "number": N_("form.type.number"), "boolean": N_("form.type.boolean"),
          "array": N_("form.type.array"), "object": N_("form.type.object")}
# validator → (message code with the limit as ``limit``, English words)
_LIMITS = {"minLength": (N_("form.min_length"), "At least {} characters"),
           "maxLength": (N_("form.max_length"), "At most {} characters"),
           "minimum": (N_("form.minimum"), "Must be at least {}"),
           "maximum": (N_("form.maximum"), "Must be at most {}"),
           "minItems": (N_("form.min_items"), "At least {} items"),
           "maxItems": (N_("form.max_items"), "At most {} items")}


def _described(error) -> tuple[str, dict, str]:
    """A jsonschema error as (message code, params, English words)."""
    v, value = error.validator, error.validator_value
    if v == "required":
        return N_("form.required"), {}, "This field is required"
    if v == "type":
        kinds = [k for k in (value if isinstance(value, list) else [value]) if k != "null"]
        if kinds and kinds[0] in _TYPES:
            return _TYPES[kinds[0]], {}, f"Expected {' or '.join(kinds)}"
    if v == "enum":
        values = ", ".join(map(str, value))
        return N_("form.enum"), {"values": values}, f"Must be one of: {values}"
    if v in _LIMITS:
        code, english = _LIMITS[v]
        return code, {"limit": value}, english.format(value)
    if v == "format":
        return N_("form.format"), {"format": value}, f"Invalid format ({value})"
    if v == "pattern":
        return N_("form.pattern"), {}, "Invalid format"
    if v == "const" and isinstance(value, bool):
        # a box to tick (confirmations): "must be True" says nothing to the person
        return ((N_("form.must_tick"), {}, "Tick this box to confirm") if value else
                (N_("form.must_untick"), {}, "Leave this box unticked"))
    if v == "const":
        shown = json.dumps(value, ensure_ascii=False)
        return N_("form.const"), {"value": shown}, f"Must be {shown}"
    return N_("form.invalid_value"), {"detail": error.message}, error.message


def _field(error) -> str:
    path = [str(p) for p in error.absolute_path]
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else ""
        path.append(missing)
    return ".".join(path) or "(form)"


@lru_cache(maxsize=256)
def _validator(schema_json: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads(schema_json), format_checker=FormatChecker())


def form_errors(schema: dict, data: dict) -> list[dict]:
    """Field errors of ``data`` against ``schema`` (empty when valid).

    A form accepts only the fields it declares: anything else could overwrite variables the
    process relies on (who decides, who votes), so it is refused, by name.
    """
    validator = _validator(json.dumps(schema, sort_keys=True))
    declared = schema.get("properties")
    errors = [{"field": name, "code": N_("form.unknown_field"), "params": {},
               "message": "This field is not part of the form"}
              for name in (sorted(set(data) - set(declared)) if declared else [])]
    for error in sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path)):
        code, params, english = _described(error)
        errors.append({"field": _field(error), "code": code, "params": params,
                       "message": english})
    return errors


PERSON = "person"      # the x-widget of a field naming people by username
UNIT = "unit"          # the x-widget of a field naming units of the organisation by id
TODAY = "today"


def is_person(prop) -> bool:
    return isinstance(prop, dict) and prop.get("x-widget") == PERSON


def is_unit(prop) -> bool:
    return isinstance(prop, dict) and prop.get("x-widget") == UNIT


def widget_values(schema: dict, data: dict, widget: str,
                  prefix: str = "") -> list[tuple[str, str]]:
    """(field path, value) for each value of the form's fields declared ``"x-widget":
    widget`` in ``data``: such a field, a list declared so (or whose items are), or such a
    property of a list's items (named by the list's path)."""
    found: list[tuple[str, str]] = []
    if not isinstance(data, dict):
        return found

    def marked(prop) -> bool:
        return isinstance(prop, dict) and prop.get("x-widget") == widget

    for name, prop in (schema.get("properties") or {}).items():
        if not isinstance(prop, dict) or name not in data:
            continue
        path, value = prefix + name, data[name]
        items: dict = prop["items"] if isinstance(prop.get("items"), dict) else {}
        if marked(prop) or (prop.get("type") == "array" and marked(items)):
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, str) and item.strip():
                    found.append((path, item))
        elif prop.get("type") == "object":
            found += widget_values(prop, value, widget, path + ".")
        elif prop.get("type") == "array" and items.get("type") == "object":
            for item in value if isinstance(value, list) else []:
                found += [(path, v) for _, v in widget_values(items, item, widget)]
    return found


def person_values(schema: dict, data: dict) -> list[tuple[str, str]]:
    """(field path, username) for each value of the form's person fields in ``data``."""
    return widget_values(schema, data, PERSON)


def unit_values(schema: dict, data: dict) -> list[tuple[str, str]]:
    """(field path, unit id) for each value of the form's unit fields in ``data``."""
    return widget_values(schema, data, UNIT)


def _unknown_errors(pairs: list[tuple[str, str]], known: set[str], code: str,
                    what: str) -> list[dict]:
    """Field errors for the values in ``pairs`` that are not in ``known``, once per field and
    value; ``what`` says in English what the value should have been."""
    errors, seen = [], set()
    for path, value in pairs:
        if value in known or (path, value) in seen:
            continue
        seen.add((path, value))
        errors.append({"field": path, "code": code, "params": {"value": value},
                       "message": f"'{value}' is no {what} of the organisation; choose a "
                                  f"{'person' if what == 'one' else what} from it"})
    return errors


def unknown_people_errors(pairs: list[tuple[str, str]], known: set[str]) -> list[dict]:
    """Field errors for the usernames in ``pairs`` that are no one of ``known``."""
    return _unknown_errors(pairs, known, N_("form.unknown_person"), "one")


def unknown_units_errors(pairs: list[tuple[str, str]], known: set[str]) -> list[dict]:
    """Field errors for the unit ids in ``pairs`` that are no unit of ``known``."""
    return _unknown_errors(pairs, known, N_("form.unknown_unit"), "unit")


def _as_date(value) -> date | None:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value)[:10]) if value else None
    except ValueError:
        return None


# keyword → (whether a value breaks it against its limit, message code against another
# field, message code against today, English words)
_DATE_ORDER = (
    ("x-not-before", lambda v, limit: v < limit,
     N_("form.date_not_before"), N_("form.date_before_today"), "must not be before"),
    ("x-not-after", lambda v, limit: v > limit,
     N_("form.date_not_after"), N_("form.date_after_today"), "must not be after"),
    ("x-after", lambda v, limit: v <= limit,
     N_("form.date_must_be_after"), N_("form.date_must_be_after_today"), "must be after"),
    ("x-before", lambda v, limit: v >= limit,
     N_("form.date_must_be_before"), N_("form.date_must_be_before_today"), "must be before"),
)
DATE_ORDER_KEYWORDS = tuple(keyword for keyword, *_ in _DATE_ORDER)


def date_order_errors(schema: dict, data: dict, context: dict, today: date) -> list[dict]:
    """Field errors of the top-level date fields of ``data`` that break their form's
    ``x-not-before`` / ``x-not-after`` / ``x-after`` / ``x-before`` (another field, looked
    up in ``data`` then in ``context``, the step's data; or ``today``). Each names the
    field (``field``, and its title in ``params``), the limit and what it is."""
    errors = []
    properties = schema.get("properties") or {}
    for name, prop in properties.items():
        if not isinstance(prop, dict) or name not in data:
            continue
        value = _as_date(data[name])
        if value is None:
            continue
        title = prop.get("title") or name
        for key, broken, code_other, code_today, english in _DATE_ORDER:
            other = prop.get(key)
            if not other:
                continue
            limit: date | None
            if other == TODAY:
                limit, what, code = today, TODAY, code_today
            else:
                limit = _as_date(data.get(other, context.get(other)))
                what, code = (properties.get(other) or {}).get("title") or other, code_other
            if limit is not None and broken(value, limit):
                errors.append({"field": name, "code": code,
                               "params": {"limit": limit.strftime("%d/%m/%Y"),
                                          "other": what, "field": title},
                               "message": f"{title}: {english} {what} "
                                          f"({limit.strftime('%d/%m/%Y')})"})
                break
    return errors
