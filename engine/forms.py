"""Validation of submitted task data against the task's form (a JSON Schema).

Each refusal names the field and says what is wrong as a message ``code`` with its ``params``
(the web app and the API say it in the reader's language from the catalogues, e.g.
``form.min_length`` with ``{"limit": 10}``) and an English ``message`` for logs.
"""
from __future__ import annotations

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
