"""Rendering a document template (a DOCX with Jinja tags, docxtpl's syntax) with a case's
data.

Templates are data designers change: they are rendered in Jinja's sandbox, with values
XML-escaped, and the helpers below as filters: ``money`` (1.500.000 đồng), ``date``
(dd/mm/yyyy), ``long_date`` (ngày 05 tháng 3 năm 2026), ``name`` (a username's full
name) and ``unit_name`` (a unit id's unit name; a list: the names, comma-separated).
"""
from __future__ import annotations

import io
import re
import struct
import threading
import zipfile
import zlib
from collections import OrderedDict
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Callable

import docx.oxml.ns
from docx.opc.constants import CONTENT_TYPE as CT
from docx.opc.constants import RELATIONSHIP_TYPE as RT
from docx.opc.coreprops import CoreProperties
from docx.opc.oxml import serialize_part_xml
from docx.oxml.parser import parse_xml
from docxtpl import DocxTemplate
from jinja2 import Template
from jinja2.sandbox import SandboxedEnvironment
from lxml import etree


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


_MISSING = object()


class _Kept:
    """What was made from each of the last ``size`` texts (compiled code, cleaned XML): a
    template's parts are the same text at every render."""

    def __init__(self, size: int = 64):
        self._made: OrderedDict[str, Any] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, text: Any, make: Callable[[Any], Any]) -> Any:
        with self._lock:
            made = self._made.get(text, _MISSING)
            if made is not _MISSING:
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

    def compiled(self, source: str) -> Template:
        """``source`` compiled, not kept here (its prepared template keeps it)."""
        return super().from_string(source)


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
    """The DOCX of ``template`` filled with ``context`` (``names`` and ``unit_names`` read a
    username's and a unit id's name): docxtpl's document, made from the template's parts
    prepared once (:class:`_Prepared`), so that a render only fills in the parts with Jinja
    tags and compresses those; the same data give the same bytes."""
    token = _NAMES.set((names, unit_names))
    try:
        prepared = _PREPARED.get(template, _Prepared.of)
        if prepared is None:                     # a package the prepared path does not cover
            return _with_docxtpl(template, context)
        return prepared.render(context)
    except Exception as exc:                 # noqa: BLE001 - a designer's template
        raise TemplateFailed(f"{type(exc).__name__}: {exc}") from None
    finally:
        _NAMES.reset(token)


def render_with_docxtpl(template: bytes, context: dict, names: Callable[[Any], str],
                        unit_names: Callable[[Any], str] = _as_is) -> bytes:
    """The DOCX as docxtpl makes it (python-docx opens the whole package, every XML part
    is parsed and written again, every member compressed again): what :func:`render`'s
    documents are compared with (tests/test_documents.py)."""
    token = _NAMES.set((names, unit_names))
    try:
        return _with_docxtpl(template, context)
    except Exception as exc:                 # noqa: BLE001 - a designer's template
        raise TemplateFailed(f"{type(exc).__name__}: {exc}") from None
    finally:
        _NAMES.reset(token)


def _with_docxtpl(template: bytes, context: dict) -> bytes:
    document = _Document(io.BytesIO(template))
    document.render(context, _ENVIRONMENT, autoescape=True)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


# --- the prepared template -------------------------------------------------------------
# A profile of one document (cProfile, the six documents of a proposal): python-docx parsing
# every XML part of the template (styles.xml and stylesWithEffects.xml are 790 KB of the
# 835 KB) took 23% of a render, compressing the members again 17%, serializing the parts
# again 11%, reading the zip 10%; Jinja filling the body in 4%. None of that depends on the
# case's data but the parts docxtpl renders: the main document's body, the headers and
# footers, the core properties.

_RENDERED_PROPERTIES = ("author", "comments", "identifier", "language", "subject", "title")
_TOOLS = DocxTemplate(None)        # docxtpl's text functions (they keep no state)
_ZIP_TIME = 0, ((2026 - 1980) << 9) | (1 << 5) | 1    # MS-DOS time and date: 01/01/2026 00:00
_BODY = "{%s}body" % docx.oxml.ns.nsmap["w"]
_DRAWING = "{%s}docPr" % docx.oxml.ns.nsmap["wp"]
_DECLARATION = re.compile(rb' xmlns(:[^=]+)?="([^"]*)"')


def _in_root(tag: bytes, document_ns: dict[str, str | None]) -> bytes | None:
    """The start tag of a body serialized on its own (``<w:body xmlns:w=...>``) as it is
    written inside the document's root: lxml drops a moved element's declarations of the
    namespaces its new parent declares. None when that is not a plain removal (a default
    namespace, a namespace the root declares with another prefix)."""
    if tag.endswith(b"/>"):
        return None
    kept = []
    for declaration in _DECLARATION.finditer(tag):
        prefix, href = declaration.group(1), declaration.group(2).decode()
        if prefix is None:
            return None
        if href not in document_ns:
            kept.append(declaration.group(0))
        elif document_ns[href] != prefix[1:].decode():
            return None
    rest = _DECLARATION.sub(b"", tag)
    if b" " in rest.rstrip(b">") or not rest.startswith(b"<w:body"):
        return None                          # attributes other than declarations
    return rest[:-1] + b"".join(kept) + b">"


def _deflated(data: bytes) -> bytes:
    """``data`` deflated as zipfile does (zlib's default level, raw stream)."""
    compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


@dataclass(frozen=True)
class _Member:
    """A zip member copied as it is: its name, CRC-32, size and deflated bytes."""
    name: bytes
    crc: int
    size: int
    deflated: bytes

    @classmethod
    def of(cls, name: str, data: bytes) -> "_Member":
        return cls(name.encode("utf-8"), zlib.crc32(data), len(data), _deflated(data))


def _zip(members: list[_Member]) -> bytes:
    """The zip of ``members`` (deflated, a fixed date, no extra fields): zipfile's layout
    with the same date for every document, so the same content gives the same bytes."""
    time_, date_ = _ZIP_TIME
    out: list[bytes] = []
    directory: list[bytes] = []
    offset = 0
    for m in members:
        flags = 0x800 if not m.name.isascii() else 0
        local = struct.pack("<4s2B4HL2L2H", b"PK\x03\x04", 20, 0, flags, 8, time_, date_,
                            m.crc, len(m.deflated), m.size, len(m.name), 0)
        directory.append(struct.pack("<4s4B4HL2L5H2L", b"PK\x01\x02", 20, 3, 20, 0, flags, 8,
                                     time_, date_, m.crc, len(m.deflated), m.size,
                                     len(m.name), 0, 0, 0, 0, 0o600 << 16, offset) + m.name)
        out += (local, m.name, m.deflated)
        offset += len(local) + len(m.name) + len(m.deflated)
    central = b"".join(directory)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(members), len(members),
                      len(central), offset, 0)
    return b"".join(out) + central + end


def _source(xml: str) -> Template:
    """A part's XML as docxtpl gives it to Jinja (cleaned, one paragraph a line), compiled."""
    xml = re.sub(r"<w:p([ >])", r"\n<w:p\1", _Document._cleaned.get(xml, _TOOLS.patch_xml))
    return _ENVIRONMENT.compiled(xml)


def _filled(template: Template, context: dict) -> str:
    """docxtpl's ``render_xml_part`` after its Jinja step."""
    xml = template.render(context).replace("\n<w:p ", "<w:p ").replace("\n<w:p>", "<w:p>")
    xml = xml.replace("{_{", "{{").replace("}_}", "}}").replace("{_%", "{%").replace("%_}", "%}")
    return _listing(xml)


# docxtpl's resolve_listing turns tabs, \a, new lines and \f in a paragraph's text into
# runs, breaks and paragraphs: three nested regular expressions over the whole part, which
# leave a paragraph without those characters as it is (the fields of most documents)
_SPECIAL = re.compile("[\t\a\n\f]")
_PARAGRAPH = re.compile(r"<w:p(?: [^>]*)?>.*?</w:p>", re.DOTALL)


def _listing_of(paragraph: re.Match) -> str:
    text = paragraph.group(0)
    return _TOOLS.resolve_listing(text) if _SPECIAL.search(text) else text


def _listing(xml: str) -> str:
    """docxtpl's ``resolve_listing``, run on the paragraphs that have such characters."""
    return _PARAGRAPH.sub(_listing_of, xml) if _SPECIAL.search(xml) else xml


class _Prepared:
    """A template's package as docxtpl would write it without rendering (python-docx's
    parts, content types and relationships, in its order), each member deflated once, and
    the parts docxtpl renders kept as compiled Jinja: a render fills those in, serializes
    them as docxtpl does and writes the zip, copying the other members' deflated bytes."""

    def __init__(self, members: list[tuple[str, _Member | None]], document: str,
                 document_xml: bytes, body: Template, stories: dict[str, Template],
                 core: str, core_xml: bytes, properties: dict[str, Template]):
        self.members = members
        self.document, self.document_xml, self.body = document, document_xml, body
        # the document's root around an empty body, as serialize_part_xml writes it: a
        # render writes the filled body between them instead of parsing the template's
        # whole document again and moving the body into it
        root = parse_xml(document_xml)
        root.replace(root.find(_BODY), root.makeelement(_BODY))
        self.around = tuple(serialize_part_xml(root).split(b"<w:body/>"))
        assert len(self.around) == 2
        self.document_ns = {href: prefix for prefix, href in root.nsmap.items()}
        if len(self.document_ns) < len(root.nsmap):     # a namespace with two prefixes
            self.document_ns = dict.fromkeys(self.document_ns)
        self._body_tags: dict[bytes, bytes | None] = {}
        self.stories = stories
        self.core, self.core_xml, self.properties = core, core_xml, properties

    @classmethod
    def of(cls, template: bytes) -> "_Prepared | None":
        """The prepared template, or None for a package docxtpl renders in ways this does
        not repeat (footnotes, no core properties, a header or footer shared by two
        relationships): those are rendered by docxtpl itself."""
        source = _Document(io.BytesIO(template))
        source.init_docx()
        package = source.docx.part.package
        if any(part.content_type == CT.WML_FOOTNOTES for part in package.iter_parts()):
            return None
        try:
            core_part = package.part_related_by(RT.CORE_PROPERTIES)
        except KeyError:
            return None
        stories: dict[str, Template] = {}
        for uri in (source.HEADER_URI, source.FOOTER_URI):
            for _, part in source.get_headers_footers(uri):
                xml = source.get_part_xml(part)
                if part.partname.membername in stories or \
                        source.get_headers_footers_encoding(xml).lower() != "utf-8":
                    return None
                stories[part.partname.membername] = _source(xml)
        body = _source(source.get_xml())
        core = CoreProperties(parse_xml(core_part.blob))
        properties = {name: _ENVIRONMENT.compiled(getattr(core, name))
                      for name in _RENDERED_PROPERTIES}
        written = io.BytesIO()
        source.docx.save(written)
        document = source.docx.part.partname.membername
        rendered = {document, core_part.partname.membername, *stories}
        members: list[tuple[str, _Member | None]] = []
        kept: dict[str, bytes] = {}
        with zipfile.ZipFile(written) as package_zip:
            for info in package_zip.infolist():
                data = package_zip.read(info)
                if info.filename in rendered:
                    kept[info.filename] = data
                    members.append((info.filename, None))
                else:
                    members.append((info.filename, _Member.of(info.filename, data)))
        prepared = cls(members, document, kept[document], body, stories,
                       core_part.partname.membername, kept[core_part.partname.membername],
                       properties)
        if not any("{" in (getattr(core, name) or "") for name in _RENDERED_PROPERTIES):
            # no tags in the core properties: docxtpl's rendering of them is the same at
            # every render (it adds the elements it sets), so it is made once
            constant = _Member.of(prepared.core, prepared._core({}))
            prepared.members = [(name, constant if name == prepared.core else member)
                                for name, member in members]
        return prepared

    def render(self, context: dict) -> bytes:
        return _zip([member or _Member.of(name, self._part(name, context))
                     for name, member in self.members])

    def _part(self, name: str, context: dict) -> bytes:
        if name == self.document:
            return self._document(context)
        if name == self.core:
            return self._core(context)
        return serialize_part_xml(parse_xml(_filled(self.stories[name], context)
                                            .encode("utf-8")))

    def _document(self, context: dict) -> bytes:
        """docxtpl's body: filled, its tables' grids fixed, drawings numbered from 1001, in
        the document's root."""
        body = _TOOLS.fix_tables(_filled(self.body, context))
        for number, drawing in enumerate(body.iter(_DRAWING), 1001):
            drawing.attrib["id"] = str(number)
        written = etree.tostring(body, encoding="UTF-8", xml_declaration=False)
        start = written.find(b">") + 1
        if written[:start] not in self._body_tags:
            self._body_tags[written[:start]] = _in_root(written[:start], self.document_ns)
        tag = self._body_tags[written[:start]]
        if tag is not None and b"xmlns" not in written[start:]:
            return b"".join((self.around[0], tag, written[start:], self.around[1]))
        root = parse_xml(self.document_xml)
        root.replace(root.find(_BODY), body)
        return serialize_part_xml(root)

    def _core(self, context: dict) -> bytes:
        core = CoreProperties(parse_xml(self.core_xml))
        for name, template in self.properties.items():
            setattr(core, name, template.render(context))
        return serialize_part_xml(core._element)


_PREPARED = _Kept(32)
