"""Process designers' pages: the variant's processes, the modeler with validation and
deployment (through the REST API from the page), version history and the comparison of a
variant with ``national``."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from flask import Blueprint, render_template, request
from sqlalchemy import select

from engine import diagrams
from engine import drafts as drafting
from engine.errors import NotFound
from engine.org import POSITIONS
from engine.roles import declared_roles
from engine.variants import UNCONFIRMED
from engine.store import Definition

from .. import catalogues
from ..problems import ApiProblem
from .i18n import lang
from .web import engine, principal, signed_in

blp = Blueprint("designer", __name__, template_folder="templates")
BASE_VARIANT = "national"
# what validating and deploying from the modeler may answer, said by its script
MODELER_MESSAGES = ("bpmn.", "template.", "access.", "definition.", "process.", "data.")


def designed_variants() -> list[str]:
    me = principal()
    with engine().db.reading() as session:
        deployed = sorted(set(session.scalars(select(Definition.variant).distinct())))
    return [v for v in deployed if me.is_designer(v)]


def _require_designer(variant: str) -> None:
    if not principal().is_designer(variant):
        raise ApiProblem("forbidden", f"only designers of '{variant}' may open its processes",
                         code="access.designer", params={"variant": variant})


@blp.route("/designer")
@signed_in
def variants():
    chosen = designed_variants()
    processes = {v: engine().repository.latest_versions(v) for v in chosen}
    return render_template("designer_index.html", processes=processes, base_keys=base_keys())


def _definition(variant: str, key: str) -> Definition:
    wanted = request.args.get("version", type=int)
    if wanted:
        definition = engine().repository.get(wanted)
        if definition.variant != variant or definition.key != key:
            raise NotFound(f"definition {wanted} is not a version of {variant}/{key}",
                           code="definition.not_found")
        return definition
    return engine().repository.latest(variant, key)


# The modeler's own words (bpmn-js's palette, context pad and replace menu, the properties
# panel's labels) in each language other than English, kept with the catalogues.
TRANSLATIONS = Path(__file__).resolve().parents[1] / "translations"


@lru_cache(maxsize=4)
def modeler_words(language: str) -> dict[str, str]:
    path = TRANSLATIONS / language / "modeler.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def studio_data(definition: Definition) -> dict:
    """What the properties panel offers for a variant: its stages (named in the page's
    language), the roles its lanes may name, the forms deployed with its processes and their
    fields, its deadlines in working days."""
    repository = engine().repository
    settings = repository.settings(definition)
    english = lang() == "en"
    stages = {key: (spec.get("label_en") if english else None) or spec.get("label") or key
              for key, spec in (settings.get("stages") or {}).items()}
    fields: dict[str, list[str]] = {}
    for deployed in repository.latest_versions(definition.variant):
        for name, text in deployed.sources.items():
            if name.startswith("forms/") and name[len("forms/"):] not in fields:
                try:
                    schema = json.loads(text)
                except ValueError:
                    schema = {}
                properties = schema.get("properties") if isinstance(schema, dict) else None
                fields[name[len("forms/"):]] = list(properties or {})
    forms = sorted(fields)
    deadlines = {name: days for name, days in (settings.get("deadlines") or {}).items()
                 if isinstance(days, int)}
    return {"variant": definition.variant, "stages": stages, "forms": forms,
            "deadlines": deadlines, "fields": fields,
            "roles": list(dict.fromkeys((*declared_roles(settings), "proposer", *POSITIONS)))}


@blp.route("/designer/<string:variant>/<string:key>")
@signed_in
def modeler(variant, key):
    _require_designer(variant)
    definition = _definition(variant, key)
    file_name, xml = diagrams.main_file(definition.sources, key)
    # the studio edits the variant's draft when there is one (not when a version is asked)
    draft = None if request.args.get("version") else engine().drafts.get(variant, principal())
    if draft is not None and file_name in draft.files:
        xml = draft.files[file_name].decode("utf-8")
    return render_template("modeler.html", definition=definition, file_name=file_name,
                           xml=xml, draft=draft,
                           versions=engine().repository.versions(variant, key)[::-1],
                           base=BASE_VARIANT, messages=catalogues.messages(MODELER_MESSAGES),
                           studio=studio_data(definition), words=modeler_words(lang()))


@blp.route("/designer/<string:variant>/<string:key>/compare")
@signed_in
def compare(variant, key):
    _require_designer(variant)
    repository = engine().repository
    mine = repository.latest(variant, key)
    _, mine_xml = diagrams.main_file(mine.sources, key)
    base = _base_version(key)
    if base is None:
        # a process of the variant's own (Đắk Lắk's department report): nothing to compare
        return render_template("compare.html", mine=mine, base=None, mine_xml=mine_xml)
    _, base_xml = diagrams.main_file(base.sources, key)
    difference = diagrams.diff(base_xml, mine_xml)
    names = {**diagrams.element_names(base_xml), **diagrams.element_names(mine_xml)}
    # the diagram alone would call a province with its own routing "the same": its
    # settings and its forms are compared too
    settings = drafting.settings_changes(_compared_settings(base), _compared_settings(mine))
    forms = _form_differences(base.sources, mine.sources)
    same = difference.same and not settings and not forms
    return render_template("compare.html", mine=mine, base=base, mine_xml=mine_xml,
                           base_xml=base_xml, diff=difference, names=names,
                           settings=settings, forms=forms, same=same)


def _base_version(key: str) -> Definition | None:
    try:
        return engine().repository.latest(BASE_VARIANT, key)
    except NotFound:
        return None


def base_keys() -> set[str]:
    """The processes ``national`` has: the others exist only in their variant."""
    return {d.key for d in engine().repository.latest_versions(BASE_VARIANT)}


# what names a variant rather than what it does
_IDENTITY = ("name", "title", UNCONFIRMED)


def _compared_settings(definition: Definition) -> dict:
    settings = engine().repository.settings(definition)
    return {k: v for k, v in settings.items() if k not in _IDENTITY}


def _form_differences(base: dict[str, str], mine: dict[str, str]) -> list[dict]:
    found: list[dict] = []
    forms = sorted({n for n in (*base, *mine) if n.startswith("forms/")})
    for name in forms:
        if name not in base or name not in mine:
            found.append({"path": name, "change": "added" if name in mine else "removed",
                          "fields": []})
        elif base[name] != mine[name]:
            fields = drafting.form_changes(base[name].encode(), mine[name].encode())
            if fields:
                found.append({"path": name, "change": "changed", "fields": fields})
    return found
