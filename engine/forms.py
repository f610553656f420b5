"""Validation of submitted task data against the task's form (a JSON Schema).

Each refusal names the field and says what is wrong, in Vietnamese (``message``) and English
(``message_en``), so the web form can show it next to the field.
"""
from __future__ import annotations

from functools import lru_cache
import json

from jsonschema import Draft202012Validator, FormatChecker

_TYPES_VI = {"string": "văn bản", "integer": "số nguyên", "number": "số", "boolean": "đúng/sai",
             "array": "danh sách", "object": "nhóm thông tin", "null": "trống"}


def _messages(error) -> tuple[str, str]:
    v, value = error.validator, error.validator_value
    if v == "required":
        return "Trường bắt buộc, chưa được điền", "This field is required"
    if v == "type":
        kinds = value if isinstance(value, list) else [value]
        return (f"Cần nhập {' hoặc '.join(_TYPES_VI.get(k) or k for k in kinds)}",
                f"Expected {' or '.join(kinds)}")
    if v == "enum":
        return (f"Giá trị không hợp lệ; chọn một trong: {', '.join(map(str, value))}",
                f"Must be one of: {', '.join(map(str, value))}")
    if v == "minLength":
        return f"Cần ít nhất {value} ký tự", f"At least {value} characters"
    if v == "maxLength":
        return f"Tối đa {value} ký tự", f"At most {value} characters"
    if v == "minimum":
        return f"Không được nhỏ hơn {value}", f"Must be at least {value}"
    if v == "maximum":
        return f"Không được lớn hơn {value}", f"Must be at most {value}"
    if v == "minItems":
        return f"Cần ít nhất {value} mục", f"At least {value} items"
    if v == "maxItems":
        return f"Tối đa {value} mục", f"At most {value} items"
    if v == "format":
        return f"Sai định dạng ({value})", f"Invalid format ({value})"
    if v == "pattern":
        return "Sai định dạng", "Invalid format"
    if v == "const":
        return f"Phải là {value}", f"Must be {value}"
    return "Giá trị không hợp lệ", error.message


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
    errors = [{"field": name, "message": "Trường này không có trong biểu mẫu",
               "message_en": "This field is not part of the form"}
              for name in (sorted(set(data) - set(declared)) if declared else [])]
    for error in sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path)):
        vi, en = _messages(error)
        errors.append({"field": _field(error), "message": vi, "message_en": en})
    return errors
