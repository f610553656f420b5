"""A state part's JSON text reads back as the value it was written from, whichever encoder
wrote it (engine.serialization.Codec._dumps: orjson's, or json's where orjson's text would
read back otherwise): NaN and the infinities (which task data cannot hold, but a state
written before may), integers over 64 bits, keys that are not strings, sets, dates; and the
same value always gives the same text (a part's digest is compared from one save to the
next)."""
from __future__ import annotations

import json
import math
from datetime import date, datetime, timezone
from decimal import Decimal

from conftest import ALICE, bpmn_source
from engine.serialization import Codec


def _same(a, b) -> bool:
    """Equal, NaN equal to NaN (``==`` says a NaN is equal to nothing)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


VALUES = {
    "nan": {"x": float("nan")},
    "infinities": {"x": [float("inf"), float("-inf")]},
    "big integers": {"x": 2 ** 70, "y": -(2 ** 64) - 1, "z": 2 ** 63},
    "integer keys": {1: "một", 2.5: "hai"},
    "set": {"x": {3}},
    "none": {"x": None, "note": "null"},
    "none beside a NaN": {"x": None, "y": [1e16, float("nan")], "z": (None, 2)},
    "text": {"x": "Báo cáo \"năm\" \\ \n\t\u2028 \x01 /"},
    "floats": {"x": [1e16, 1e-7, 0.1, -0.0, 1.5e300]},
    "nested": {"x": [{"a": [[], {}, [1, [2, [3]]]]}], "y": (1, 2)},
    "none beside dates": {"x": None, "d": date(2027, 1, 15), "n": [1.5, None],
                          "t": datetime(2027, 1, 15, 8, tzinfo=timezone.utc)},
    "nan beside dates": {"x": None, "d": date(2027, 1, 15), "y": [{"z": float("nan")}]},
    "infinity in a tuple beside a decimal": {"x": None, "m": Decimal("1.10"),
                                             "y": (1, float("inf"))},
}


def test_each_part_text_reads_back_as_json_writes_it():
    codec = Codec()
    for name, value in VALUES.items():
        text = codec._dumps(value)
        stdlib = json.dumps(value, cls=codec._serializer._encoder_cls, separators=(",", ":"),
                            ensure_ascii=False)
        assert _same(json.loads(text), json.loads(stdlib)), name
        assert codec._dumps(value) == text, name           # the same text every time


def test_dates_and_decimals_go_through_the_registry():
    codec = Codec()
    value = codec.registry.convert({"d": date(2027, 1, 15), "m": Decimal("1.10"),
                                    "t": datetime(2027, 1, 15, 8, tzinfo=timezone.utc)})
    assert codec.registry.restore(json.loads(codec._dumps(value))) == {
        "d": date(2027, 1, 15), "m": Decimal("1.10"),
        "t": datetime(2027, 1, 15, 8, tzinfo=timezone.utc)}


def test_a_stored_workflow_keeps_values_orjson_would_not_write_as_they_are(engine):
    engine.repository.deploy("national", [bpmn_source("frozen_state.bpmn")], "designer")
    data = {"count": 2 ** 70, "low": -(2 ** 64) - 1, "label": "n/a", "none": None,
            "nested": {"ids": [2 ** 65, None, 0.5]}}
    instance = engine.runtime.start("national", "frozen_state", principal=ALICE, data=data)
    [first] = engine.runtime.open_tasks(instance.id)
    engine.runtime.complete_task(first.id, {}, principal=ALICE)
    workflow = engine.runtime.workflow(instance.id)         # read from the store
    stored = workflow.get_tasks(spec_name=first.element_id)[0].data
    assert {k: stored[k] for k in data} == data
    assert type(stored["count"]) is int and type(stored["nested"]["ids"][0]) is int


def test_a_script_cannot_leave_nan_or_an_infinity_in_the_data(engine):
    """NaN and the infinities are not JSON (nor storable in PostgreSQL's JSON columns): a
    script that leaves one in the task data fails, as an incident naming the variable."""
    engine.repository.deploy("national", [bpmn_source("frozen_state.bpmn", {
        "rounds = 0</bpmn:script>": 'rounds = 0\nratio = float("nan")</bpmn:script>'})],
        "designer")
    instance = engine.runtime.start("national", "frozen_state", principal=ALICE)
    stored = engine.runtime.get(instance.id)
    assert stored.status == "incident"
    assert "NaN or an infinity" in stored.incident_message
    assert "'ratio'" in stored.incident_message


def test_a_part_with_nulls_and_dates_is_written_by_orjson_alone(monkeypatch):
    """A null in orjson's text comes from a None or from a float that is not finite: a part
    holding dates (which read back as the registry's dictionaries, not as the value) and no
    such float is orjson's text, without json's encoder; with one, json's."""
    codec = Codec()
    value = {"x": None, "d": date(2027, 1, 15), "n": [0.5, None, {"t": (1, "a")}]}
    expected = json.dumps(value, cls=codec._serializer._encoder_cls, separators=(",", ":"),
                          ensure_ascii=False)
    used = []
    encode = codec._encoder.encode
    monkeypatch.setattr(codec._encoder, "encode", lambda v: used.append(v) or encode(v))
    assert json.loads(codec._dumps(value)) == json.loads(expected) and not used
    for non_finite in (float("nan"), float("inf")):
        assert codec._dumps({**value, "f": [non_finite]}) and len(used) == 1
        used.clear()
