"""Rendering a document template (a DOCX with Jinja tags, docxtpl) with a case's data.

Templates are data designers change: they are rendered in Jinja's sandbox, with values
XML-escaped, and the helpers below as filters: ``money`` (1.500.000 đồng), ``date``
(dd/mm/yyyy), ``long_date`` (ngày 05 tháng 3 năm 2026), ``name`` (a username's full
name) and ``unit_name`` (a unit id's unit name; a list: the names, comma-separated).
"""
from __future__ import annotations

import io
import threading
from collections import OrderedDict
from contextvars import ContextVar
from datetime import date, datetime
from typing import Any, Callable

from docxtpl import DocxTemplate
from jinja2.sandbox import SandboxedEnvironment


class TemplateFailed(Exception):
    """A template that cannot be rendered (broken tags, an error in an expression)."""


def long_date(value: date | datetime | str | None) -> str:
    """Nghị định 30/2020/NĐ-CP: ``ngày 05 tháng 3 năm 2026``: a leading 0 for days below 10
    and for the months 1 and 2 only."""
    day = _as_date(value)
    if day is None:
        return ""
    month = f"{day.month:02d}" if day.month < 3 else str(day.month)
    return f"ngày {day.day:02d} tháng {month} năm {day.year}"


def short_date(value: date | datetime | str | None) -> str:
    day = _as_date(value)
    return day.strftime("%d/%m/%Y") if day else ""


def money(value: Any) -> str:
    """An amount in đồng with dots between thousands: ``1.500.000 đồng``."""
    try:
        amount = int(round(float(value)))
    except (TypeError, ValueError):
        return str(value or "")
    sign = "-" if amount < 0 else ""
    return f"{sign}{abs(amount):,}".replace(",", ".") + " đồng"


def _as_date(value) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).date()
        except ValueError:
            return None
    return None


class _Kept:
    """What was made from each of the last ``size`` texts (compiled code, cleaned XML): a
    template's parts are the same text at every render."""

    def __init__(self, size: int = 64):
        self._made: OrderedDict[str, Any] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, text: str, make: Callable[[str], Any]) -> Any:
        with self._lock:
            made = self._made.get(text)
            if made is not None:
                self._made.move_to_end(text)
                return made
        made = make(text)            # outside the lock: a failure keeps nothing
        with self._lock:
            self._made[text] = made
            while len(self._made) > self._size:
                self._made.popitem(last=False)
        return made


class _Templates(SandboxedEnvironment):
    """The one sandboxed environment documents are rendered in, which keeps the Jinja code
    it compiled from each part of a template (docxtpl asks for it at every render: compiling
    the body of a decision took as long as filling it in). The ``name`` and ``unit_name``
    filters are the render's own (names read through its session), set for the render's
    context."""

    def __init__(self):
        super().__init__(autoescape=True)
        self.filters.update(money=money, date=short_date, long_date=long_date,
                            name=lambda value: _NAMES.get()[0](value),
                            unit_name=lambda value: _NAMES.get()[1](value))
        self._compiled = _Kept()

    def from_string(self, source, globals=None, template_class=None):  # noqa: A002
        if globals or template_class or not isinstance(source, str):
            return super().from_string(source, globals, template_class)
        return self._compiled.get(source, super().from_string)


class _Document(DocxTemplate):
    """docxtpl's template, whose cleaning of each part's XML for Jinja (a pure function of
    the text, a dozen regular expressions over the whole part) is done once per part."""

    _cleaned = _Kept()

    def patch_xml(self, src_xml):
        return self._cleaned.get(src_xml, super().patch_xml)


_NAMES: ContextVar[tuple[Callable[[Any], str], Callable[[Any], str]]] = ContextVar(
    "document_names")
_ENVIRONMENT = _Templates()


def _as_is(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value or "")


def render(template: bytes, context: dict, names: Callable[[Any], str],
           unit_names: Callable[[Any], str] = _as_is) -> bytes:
    """The DOCX of ``template`` filled with ``context``; ``names`` and ``unit_names`` read
    a username's and a unit id's name."""
    token = _NAMES.set((names, unit_names))
    try:
        document = _Document(io.BytesIO(template))
        document.render(context, _ENVIRONMENT, autoescape=True)
        out = io.BytesIO()
        document.save(out)
    except Exception as exc:                 # noqa: BLE001 - a designer's template
        raise TemplateFailed(f"{type(exc).__name__}: {exc}") from None
    finally:
        _NAMES.reset(token)
    return out.getvalue()
