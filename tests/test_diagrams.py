"""What the web app shows of a diagram: its main file, element names, and the elements a
variant changed against another."""
from __future__ import annotations

from engine import diagrams

from conftest import PROJECT

NATIONAL = (PROJECT / "processes" / "national" / "proposal.bpmn").read_text(encoding="utf-8")


def test_the_same_diagram_has_no_difference_even_with_defaults_left_out():
    resaved = NATIONAL.replace(' cancelActivity="true"', "")   # as bpmn-js writes it
    assert resaved != NATIONAL
    assert diagrams.diff(NATIONAL, resaved).same


def test_renamed_added_and_removed_elements_are_named():
    changed = NATIONAL.replace('name="Tiếp nhận, xem xét phạm vi và tính chất"',
                               'name="Sàng lọc"')
    changed = changed.replace('<bpmn:dataObject id="ballots" name="ballots" />', "")
    changed = changed.replace('<bpmn:dataObject id="voters" name="voters" />',
                              '<bpmn:dataObject id="voters" name="voters" />'
                              '<bpmn:dataObject id="notes" name="notes" />')
    difference = diagrams.diff(NATIONAL, changed)
    assert difference.changed == ["screening"]
    assert difference.added == ["notes"] and difference.removed == ["ballots"]
    assert diagrams.element_names(changed)["screening"] == "Sàng lọc"


def test_a_rerouted_flow_marks_its_ends():
    # the flow leaving the plan now names another target: the flow and the nodes whose
    # incoming/outgoing lists changed differ
    rerouted = NATIONAL.replace('targetRef="route"', 'targetRef="screening"', 1)
    difference = diagrams.diff(NATIONAL, rerouted)
    assert "flow_submit_plan_to_route" in difference.changed


def test_main_file_is_the_one_defining_the_process():
    sources = {"council.bpmn": "<x id=\"council\"/>", "proposal.bpmn": NATIONAL}
    assert diagrams.main_file(sources, "proposal") == ("proposal.bpmn", NATIONAL)
