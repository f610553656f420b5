"""What a deployed definition's diagram says to people: its main BPMN file, the names of its
elements, and which elements of a variant's diagram differ from another variant's."""
from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree

from .bpmn import BPMN_NS, parse_file
from .variants import SourceFile

_SKIPPED = ("definitions", "process", "collaboration", "laneSet", "extensionElements")
# BPMN's default values: modelers write them or leave them out, and they mean the same
_DEFAULTS = {"cancelActivity": "true", "isInterrupting": "true", "isForCompensation": "false",
             "startQuantity": "1", "completionQuantity": "1", "parallelMultiple": "false",
             "isImmediate": "true", "gatewayDirection": "Unspecified"}


def main_file(sources: dict[str, str], key: str) -> tuple[str, str]:
    """The BPMN file (name, XML) that defines process ``key`` among a definition's sources."""
    for name, text in sorted(sources.items(), key=lambda item: item[0] != f"{key}.bpmn"):
        if name.endswith(".bpmn") and (f'id="{key}"' in text or f"id='{key}'" in text):
            return name, text
    raise KeyError(f"no BPMN file defines process '{key}'")


def _elements(xml: str) -> dict[str, etree._Element]:
    root = parse_file(SourceFile("diagram.bpmn", xml.encode("utf-8"))).root
    return {el.get("id"): el for el in root.iter()
            if isinstance(el.tag, str) and el.get("id")
            and etree.QName(el).namespace == BPMN_NS
            and etree.QName(el).localname not in _SKIPPED}


def elements(xml: str) -> dict[str, etree._Element]:
    """A diagram's BPMN elements that have ids (tasks, events, gateways, flows…) by id."""
    return _elements(xml)


def element_names(xml: str) -> dict[str, str]:
    return {i: el.get("name") or i for i, el in _elements(xml).items()}


def _signature(element: etree._Element) -> str:
    """The element with everything it says, except elements that have ids of their own
    (they are compared by themselves)."""
    clone = etree.fromstring(etree.tostring(element))
    for child in list(clone.iter())[1:]:
        if isinstance(child.tag, str) and child.get("id") and child.getparent() is not None:
            child.getparent().remove(child)
    for node in clone.iter():
        for name, value in _DEFAULTS.items():
            if node.get(name) == value:
                del node.attrib[name]
    return etree.tostring(clone, method="c14n").decode()


@dataclass
class DiagramDiff:
    added: list[str] = field(default_factory=list)      # only in the variant
    removed: list[str] = field(default_factory=list)    # only in the base
    changed: list[str] = field(default_factory=list)    # in both, saying different things

    @property
    def same(self) -> bool:
        return not (self.added or self.removed or self.changed)


def diff(base_xml: str, variant_xml: str) -> DiagramDiff:
    base, variant = _elements(base_xml), _elements(variant_xml)
    return DiagramDiff(
        added=sorted(set(variant) - set(base)),
        removed=sorted(set(base) - set(variant)),
        changed=sorted(i for i in set(base) & set(variant)
                       if _signature(base[i]) != _signature(variant[i])))
