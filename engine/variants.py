"""Province variants: a folder of BPMN files plus ``variant.toml`` settings.

A variant that ``extends`` another inherits its files (unless it has a file of the same name)
and its settings (section by section, key by key). Settings are checked here, so that a
deployment naming an impossible date ("31/11") fails with the file, the field and the date.
"""
from __future__ import annotations

import calendar
import copy
import tomllib
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from .errors import N_, DefinitionInvalid, Problem
from .notifications import templates as notification_templates
from .roles import role_problems

SOURCE_SUFFIXES = (".bpmn", ".dmn")
SETTINGS_FILE = "variant.toml"
ORG_FILE = "org.toml"
# The settings no source gives: `[unconfirmed]` in a variant.toml maps "section.key" to why
# the value is only a default. A variant that sets the key itself confirms it (the mark is
# inherited otherwise); deploying and validating warn about every one still unconfirmed.
UNCONFIRMED = "unconfirmed"

# What every variant starts from: an empty calendar. Everything a procedure needs (deadlines,
# routing, council rules, reporting dates, roles, stages) is declared in national/variant.toml,
# which the provinces extend.
DEFAULT_SETTINGS: dict = {"calendar": {"days_off": [], "working_days": []}}
_MONTHS_VI = ["", "tháng 1", "tháng 2", "tháng 3", "tháng 4", "tháng 5", "tháng 6", "tháng 7",
              "tháng 8", "tháng 9", "tháng 10", "tháng 11", "tháng 12"]


@dataclass(frozen=True)
class SourceFile:
    name: str
    content: bytes


@dataclass
class Variant:
    name: str
    folder: Path
    sources: list[SourceFile]
    settings: dict
    org: dict
    lineage: tuple[str, ...] = ()     # this variant, then the ones it extends
    templates: dict = field(default_factory=dict)   # notifications/<file> → content
    documents: dict = field(default_factory=dict)   # documents/<file>.docx → content


DOCUMENTS_FOLDER = "documents"


def load_documents(folder: Path) -> dict[str, bytes]:
    """The official document templates (``documents/*.docx``) of one variant folder."""
    directory = folder / DOCUMENTS_FOLDER
    if not directory.is_dir():
        return {}
    return {p.name: p.read_bytes() for p in sorted(directory.glob("*.docx"))
            if p.is_file() and not p.name.startswith((".", "~"))}


def load_forms(forms_dir: Path, lineage: tuple[str, ...]) -> dict[str, bytes]:
    """Form schemas by file name: a variant's own folder wins over those it extends and over
    the shared ``forms/`` folder."""
    forms: dict[str, bytes] = {}
    for folder in [forms_dir, *(forms_dir / name for name in reversed(lineage))]:
        if folder.is_dir():
            forms.update({p.name: p.read_bytes() for p in sorted(folder.glob("*.json"))})
    return forms


def parse_day_month(value: str, where: str) -> tuple[int, int]:
    """'dd/mm' → (day, month); impossible dates are refused, never moved."""
    try:
        day_text, month_text = str(value).strip().split("/")
        day, month = int(day_text), int(month_text)
    except ValueError:
        raise DefinitionInvalid([Problem(where, f"'{value}' is not a dd/mm date",
                                                 code=N_("variant.not_day_month"),
                                                 params={"value": value})]) from None
    if not 1 <= month <= 12:
        raise DefinitionInvalid([Problem(where, f"'{value}' names month {month}, which does "
                                                f"not exist", code=N_("variant.no_month"),
                                                params={"value": value, "month": month})])
    longest = calendar.monthrange(2024, month)[1]     # a leap year: 29/02 is allowed
    if not 1 <= day <= longest:
        raise DefinitionInvalid([Problem(
            where, f"'{value}' is not a date: {_MONTHS_VI[month]} has {longest} days",
            code=N_("variant.no_day"), params={"value": value, "month": month, "days": longest})])
    return day, month


def parse_full_date(value: str, where: str) -> date:
    try:
        day, month, year = (int(p) for p in str(value).strip().split("/"))
        return date(year, month, day)
    except ValueError:
        raise DefinitionInvalid([Problem(where, f"'{value}' is not a dd/mm/yyyy date "
                                                f"that exists", code=N_("variant.not_date"),
                                                params={"value": value})]) from None


def check_settings(settings: dict, file_label: str) -> None:
    problems = []
    for section, values in settings.items():
        if not isinstance(values, dict) or section == UNCONFIRMED:
            continue
        for key, value in values.items():
            if key == "opens" or key.endswith("_deadline"):
                try:
                    parse_day_month(value, f"{file_label}: {section}.{key}")
                except DefinitionInvalid as exc:
                    problems.extend(exc.problems)
    for key in ("days_off", "working_days"):
        for value in settings.get("calendar", {}).get(key, []):
            try:
                parse_full_date(value, f"{file_label}: calendar.{key}")
            except DefinitionInvalid as exc:
                problems.extend(exc.problems)
    problems += _figure_problems(settings.get("figures") or [], file_label)
    problems += role_problems(settings, file_label)
    problems += _stage_problems(settings.get("stages") or {}, file_label)
    if problems:
        raise DefinitionInvalid(problems)


def _unconfirmed_marks(own: dict, inherited: dict, settings: dict, label: str) -> dict:
    """The marks of unconfirmed settings: the inherited ones the variant does not set
    itself, and its own; each names the file that gives the value."""
    marks = {key: dict(mark) for key, mark in inherited.items()
             if not _sets(own, key)}
    declared = own.get(UNCONFIRMED, {})
    if not isinstance(declared, dict):
        raise DefinitionInvalid([Problem(label, f"[{UNCONFIRMED}] must map 'section.key' "
                                                f"to a note", code=N_("variant.unconfirmed_table"),
                                                params={"table": UNCONFIRMED})])
    problems = []
    for key, note in declared.items():
        section, _, name = str(key).partition(".")
        if not isinstance(settings.get(section), dict) or name not in settings[section]:
            problems.append(Problem(f"{label}: {UNCONFIRMED}.{key}",
                                    f"'{key}' names no setting of the variant",
                                    code=N_("variant.unconfirmed_unknown"), params={"key": key}))
            continue
        origin = label if _sets(own, key) else inherited.get(key, {}).get("file", label)
        if isinstance(note, dict):
            # a whole variant's settings written out in one file (a draft's variant.toml)
            # keeps the file each default came from: {note = "…", file = "national/…"}
            origin, note = str(note.get("file") or origin), note.get("note", "")
        marks[key] = {"file": origin, "note": str(note)}
    if problems:
        raise DefinitionInvalid(problems)
    return marks


def _sets(own: dict, key: str) -> bool:
    section, _, name = key.partition(".")
    return isinstance(own.get(section), dict) and name in own[section]


def unconfirmed_settings(settings: dict) -> list[str]:
    """One warning per setting still marked unconfirmed, naming the file and the setting."""
    warnings = []
    for key, mark in sorted((settings.get(UNCONFIRMED) or {}).items()):
        section, _, name = key.partition(".")
        value = (settings.get(section) or {}).get(name)
        warnings.append(f"{mark.get('file')}: {key} = {value!r} is a default no source "
                        f"gives; the designer must confirm it ({mark.get('note')})")
    return warnings


def _stage_problems(stages, file_label: str) -> list[Problem]:
    if not isinstance(stages, dict):
        return [Problem(file_label, "stages must be a table of [stages] entries",
                        code=N_("variant.stages_table"))]
    problems = []
    for key, spec in stages.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("label"), str) \
                or not isinstance(spec.get("label_en", ""), str):
            problems.append(Problem(f"{file_label}: stages.{key}",
                                    "a stage needs a 'label' (and may have 'label_en')",
                                    code=N_("variant.stage_label"), params={"stage": key}))
    return problems


# What a reporting figure may count, with the settings each kind needs (see reports.py).
FIGURE_COUNTS = {"cases_started": ("process",), "cases_ended": ("process", "stage"),
                 "decisions": ("field",), "overdue_steps": ()}


def _figure_problems(figures, file_label: str) -> list[Problem]:
    problems, seen = [], set()
    if not isinstance(figures, list):
        return [Problem(file_label, "figures must be a list of [[figures]] tables",
                        code=N_("variant.figures_list"))]
    for index, figure in enumerate(figures):
        where = f"{file_label}: figures[{index}]"
        if not isinstance(figure, dict) or not isinstance(figure.get("key"), str):
            problems.append(Problem(where, "a figure needs a 'key'", code=N_("variant.figure_key")))
            continue
        if figure["key"] in seen:
            problems.append(Problem(where, f"figure '{figure['key']}' is declared twice",
                                    code=N_("variant.figure_twice"),
                                    params={"figure": figure["key"]}))
        seen.add(figure["key"])
        count = figure.get("count")
        if count not in FIGURE_COUNTS:
            problems.append(Problem(where, f"count '{count}' is not one of: "
                                           + ", ".join(FIGURE_COUNTS),
                                    code=N_("variant.figure_count"),
                                    params={"count": count, "known": ", ".join(FIGURE_COUNTS)}))
            continue
        missing = [k for k in FIGURE_COUNTS[count] if not figure.get(k)]
        if missing:
            problems.append(Problem(where, f"a '{count}' figure needs " + ", ".join(missing),
                                    code=N_("variant.figure_needs"),
                                    params={"count": count, "missing": ", ".join(missing)}))
    return problems


def _merge(base: dict, override: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        elif key == "figures" and isinstance(value, list) and isinstance(merged.get(key), list):
            # a province's figures replace inherited ones of the same key, others are added
            mine = {f.get("key"): f for f in value if isinstance(f, dict)}
            merged[key] = [copy.deepcopy(mine.pop(f.get("key"), f)) for f in merged[key]
                           if isinstance(f, dict)] + [copy.deepcopy(f) for f in mine.values()]
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def loads_toml(content: bytes | str, label: str) -> dict:
    """A TOML document, or DefinitionInvalid naming the file and what is wrong."""
    try:
        text = content.decode("utf-8") if isinstance(content, bytes) else content
        return tomllib.loads(text)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DefinitionInvalid([Problem(label, f"invalid TOML: {exc}", code=N_("variant.toml"),
                                             params={"error": str(exc)})]) from None


def _read_toml(path: Path, label: str) -> dict:
    if not path.exists():
        return {}
    return loads_toml(path.read_bytes(), label)


def read_settings(own: dict, label: str, parent: dict | None, default_name: str) -> dict:
    """A variant's settings: its own ``variant.toml`` table laid over the settings of the
    variant it extends (``parent``, already merged; None: the defaults), its unconfirmed
    marks resolved, checked as deployment checks them (DefinitionInvalid naming the file
    and the field)."""
    settings = copy.deepcopy(parent) if parent is not None else copy.deepcopy(DEFAULT_SETTINGS)
    inherited_marks = settings.pop(UNCONFIRMED, {})
    settings = _merge(settings, {k: v for k, v in own.items()
                                 if k not in ("extends", UNCONFIRMED)})
    settings["name"] = own.get("name") or default_name
    marks = _unconfirmed_marks(own, inherited_marks, settings, label)
    if marks:
        settings[UNCONFIRMED] = marks
    check_settings(settings, label)
    return settings


def load_variant(folder: Path | str, _seen: tuple = ()) -> Variant:
    folder = Path(folder).resolve()
    if not folder.is_dir():
        raise DefinitionInvalid([Problem(str(folder), "variant folder does not exist",
                                                 code=N_("variant.no_folder"))])
    label = f"{folder.name}/{SETTINGS_FILE}"
    own = _read_toml(folder / SETTINGS_FILE, label)
    name = own.get("name") or folder.name
    files: dict[str, SourceFile] = {}
    base = own.get("extends")
    org = _read_toml(folder / ORG_FILE, f"{folder.name}/{ORG_FILE}")
    lineage: tuple[str, ...] = (name,)
    parent_settings = None
    if base:
        if base in _seen or base == name:
            raise DefinitionInvalid([Problem(label, f"'extends' loops through '{base}'",
                                                     code=N_("variant.extends_loop"),
                                                     params={"variant": base})])
        parent = load_variant(folder.parent / base, _seen + (name,))
        files.update({s.name: s for s in parent.sources})
        parent_settings = parent.settings
        org = org or parent.org
        lineage += parent.lineage
    settings = read_settings(own, label, parent_settings, folder.name)
    for path in sorted(folder.iterdir()):
        if path.suffix in SOURCE_SUFFIXES and path.is_file():
            files[path.name] = SourceFile(path.name, path.read_bytes())
    templates = {**(parent.templates if base else {}),
                 **notification_templates.load_folder_chain([folder])}
    documents = {**(parent.documents if base else {}), **load_documents(folder)}
    return Variant(name, folder, list(files.values()), settings, org, lineage, templates,
                   documents)
