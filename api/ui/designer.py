"""Process designers' pages: the variant's processes, the modeler with validation and
deployment (through the REST API from the page), version history and the comparison of a
variant with ``national``."""
from __future__ import annotations

from flask import Blueprint, render_template, request
from sqlalchemy import select

from engine import diagrams
from engine.errors import NotFound
from engine.store import Definition

from .. import catalogues
from ..problems import ApiProblem
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
    return render_template("designer_index.html", processes=processes)


def _definition(variant: str, key: str) -> Definition:
    wanted = request.args.get("version", type=int)
    if wanted:
        definition = engine().repository.get(wanted)
        if definition.variant != variant or definition.key != key:
            raise NotFound(f"definition {wanted} is not a version of {variant}/{key}",
                           code="definition.not_found")
        return definition
    return engine().repository.latest(variant, key)


@blp.route("/designer/<string:variant>/<string:key>")
@signed_in
def modeler(variant, key):
    _require_designer(variant)
    definition = _definition(variant, key)
    file_name, xml = diagrams.main_file(definition.sources, key)
    return render_template("modeler.html", definition=definition, file_name=file_name,
                           xml=xml, versions=engine().repository.versions(variant, key)[::-1],
                           base=BASE_VARIANT, messages=catalogues.messages(MODELER_MESSAGES))


@blp.route("/designer/<string:variant>/<string:key>/compare")
@signed_in
def compare(variant, key):
    _require_designer(variant)
    mine = engine().repository.latest(variant, key)
    base = engine().repository.latest(BASE_VARIANT, key)
    _, mine_xml = diagrams.main_file(mine.sources, key)
    _, base_xml = diagrams.main_file(base.sources, key)
    difference = diagrams.diff(base_xml, mine_xml)
    names = {**diagrams.element_names(base_xml), **diagrams.element_names(mine_xml)}
    return render_template("compare.html", mine=mine, base=base, mine_xml=mine_xml,
                           base_xml=base_xml, diff=difference, names=names)
