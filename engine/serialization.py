"""Serialization of specs (once per definition version) and instance state (without spec).

SpiffWorkflow's serializer embeds the whole spec in every saved workflow, about half the
bytes. Here the spec is serialized once, when a definition version is deployed, and each
instance's state carries only its task tree and data; the spec objects are re-attached on load.

The state is stored zlib-compressed: the task tree repeats the same keys, spec names and
data at every task, so it shrinks about sevenfold, for a fraction of a millisecond per step.
The JSON is written compact and with its text as UTF-8 (not ``\\u`` escapes, six bytes per
Vietnamese letter before compression), and compressed at zlib's default level: a finished
proposal's state takes 5.3 KB instead of 6.0 at level 1, for about 0.2 ms more per step; a
state of millions of characters (a large reporting cycle) at level 1 (LARGE_STATE_CHARS).

Incremental state: the state is cut into *parts* (the workflow's own attributes, each task,
each subprocess's attributes and each of its tasks), each written as its own compact JSON
text. A step stores only the parts that changed or went away (a *delta*, see
:meth:`Codec.delta`, in table ``instance_state_deltas``); every so often, and when the
instance ends, the whole state is written again as one *snapshot* (``instances.state_data``,
the format above) and the deltas are dropped. A load applies the deltas, in order, to the
snapshot (:func:`apply_delta`): the result is the state the last step serialized, exactly.
"""
from __future__ import annotations

import hashlib
import json
import math
import zlib
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Iterator, Sequence
from uuid import UUID

import orjson
from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.serializer.default.event_definition import (
    TimerConditionalEventDefinitionConverter,
)
from SpiffWorkflow.bpmn.serializer.default.workflow import (
    BpmnWorkflowConverter,
    TaskConverter,
    WorkflowConverter,
)
from SpiffWorkflow.bpmn.serializer.workflow import VERSION as SPIFF_STATE_VERSION
from SpiffWorkflow.bpmn.specs.mixins.unstructured_join import UnstructuredJoin
from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG
from SpiffWorkflow.task import Task
from SpiffWorkflow.util.task import TaskState

from .multi_instance import REPLACED_TASK_SPECS, BpmnWorkflow as EngineWorkflow
from .scripting import ENGINE_TIMERS, START_TIMERS
from .task_ids import TaskId

STATE_FORMAT = f"nd73-2/spiff-{SPIFF_STATE_VERSION}"   # zlib-compressed JSON
STATE_COMPRESSION_LEVEL = 6         # zlib's default: 12 % smaller than level 1; 9 saves
                                    # 1 % more for twice the time
# a state of more characters than this (a reporting cycle of a thousand units or more; a
# proposal's is some 40,000) is compressed at level 1: a third of level 6's time for a fifth
# more bytes (a cycle of 10,000 units: 0.19 s and 7.2 MB instead of 0.59 s and 5.9 MB)
LARGE_STATE_CHARS = 8 << 20
LARGE_STATE_COMPRESSION_LEVEL = 1
SNAPSHOT_BATCH = 1 << 18           # characters of a snapshot compressed at a time
# a part's values go to the registry's encoder (SpiffEncoder.default) as they would with
# json: dates and times are not written by orjson itself (dataclasses neither)
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


class UnreadableState(ValueError):
    """A stored state that is not compressed JSON (damaged outside the engine)."""


def compress_state(text: str) -> bytes:
    return zlib.compress(text.encode("utf-8"), compression_level(len(text)))


def compression_level(characters: int) -> int:
    """The zlib level of a state of so many characters."""
    return LARGE_STATE_COMPRESSION_LEVEL if characters > LARGE_STATE_CHARS \
        else STATE_COMPRESSION_LEVEL


def state_text(blob: bytes) -> str:
    """The JSON text of a stored state."""
    try:
        return zlib.decompress(blob).decode("utf-8")
    except (zlib.error, TypeError, UnicodeDecodeError) as exc:
        raise UnreadableState(f"the stored state is not compressed JSON ({exc})") from None


# --- incremental state: parts and deltas --------------------------------------------------
# A part's key: "w" (the workflow without its tasks and subprocesses), "t:<task id>",
# "s:<subprocess id>" (a subprocess without its tasks), "s:<subprocess id>:<task id>".
WORKFLOW_PART = "w"
NESTED = ("tasks", "subprocesses")


@dataclass
class StoredState:
    """What the store holds of a workflow, as the step that last saved or loaded it left it:
    a digest of each part's JSON text (:func:`digests`: all a delta compares, a fraction of
    the texts' memory in a cached workflow), and how many deltas follow the snapshot.
    ``frozen``: the tasks the next save need not serialize again unless they changed, with
    their texts for the next snapshot (see :class:`Frozen`), None after a load."""
    parts: dict[str, bytes]
    deltas: int
    frozen: "Frozen | None" = None


def digest(text: str) -> bytes:
    """A part's digest (BLAKE2b, 128 bits: two different texts never meet in practice)."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


def digests(parts: dict[str, str]) -> dict[str, bytes]:
    return {key: digest(text) for key, text in parts.items()}


def _without(dct: dict, keys) -> dict:
    return {k: v for k, v in dct.items() if k not in keys}


def parts_of(dct: dict, dumps) -> dict[str, str]:
    """The parts of a state dictionary (``dumps``: one value to JSON text)."""
    parts = {WORKFLOW_PART: dumps(_without(dct, NESTED))}
    for task_id, task in dct["tasks"].items():
        parts["t:" + task_id] = dumps(task)
    for sub_id, sub in (dct.get("subprocesses") or {}).items():
        parts["s:" + sub_id] = dumps(_without(sub, NESTED))
        for task_id, task in sub["tasks"].items():
            parts[f"s:{sub_id}:{task_id}"] = dumps(task)
    return parts


def state_from_parts(parts: dict[str, str]) -> str:
    """The whole state's JSON text (a snapshot), put together from its parts' texts."""
    return "".join(_state_pieces(parts))


def _state_pieces(parts: dict[str, str]) -> Iterator[str]:
    """The pieces of the whole state's text, in order: the workflow's attributes, each of
    its tasks, each subprocess with its tasks (a snapshot is compressed piece by piece,
    without the whole text, hundreds of megabytes for a cycle of 50,000 units, built)."""
    tasks: list[str] = []
    subprocesses: dict[str, list] = {}
    for key, text in parts.items():
        if key[0] == "t":
            tasks.append(f'"{key[2:]}":{text}')
        elif key[0] == "s":
            sub_id, _, task_id = key[2:].partition(":")
            entry = subprocesses.setdefault(sub_id, [None, []])
            if task_id:
                entry[1].append(f'"{task_id}":{text}')
            else:
                entry[0] = text
    yield _opened(parts[WORKFLOW_PART]) + '"tasks":{'
    separator = ""
    for task in tasks:
        yield separator + task
        separator = ","
    yield '},"subprocesses":{'
    separator = ""
    for sub_id, (own, sub_tasks) in subprocesses.items():
        yield (f'{separator}"{sub_id}":{_opened(own)}"tasks":{{' + ",".join(sub_tasks)
               + "}}")
        separator = ","
    yield "}}"


def _opened(own: str | None) -> str:
    """An object's JSON text ``own`` without its closing brace, ready for more members."""
    own = own or "{}"
    return own[:-1] + ("," if own != "{}" else "")


def apply_delta(dct: dict, delta: dict) -> None:
    """Apply a stored delta (``{"set": {part: value}, "del": [part, ...]}``) to a state
    dictionary, in place."""
    subprocesses = dct.setdefault("subprocesses", {})
    for key in delta.get("del", ()):
        if key[0] == "t":
            del dct["tasks"][key[2:]]
        else:
            sub_id, _, task_id = key[2:].partition(":")
            if task_id:
                del subprocesses[sub_id]["tasks"][task_id]
            else:
                del subprocesses[sub_id]
    for key, value in delta.get("set", {}).items():
        if key == WORKFLOW_PART:
            for name in [k for k in dct if k not in NESTED and k not in value]:
                del dct[name]
            dct.update(value)
        elif key[0] == "t":
            dct["tasks"][key[2:]] = value
        else:
            sub_id, _, task_id = key[2:].partition(":")
            sub = subprocesses.setdefault(sub_id, {"tasks": {}})
            if task_id:
                sub["tasks"][task_id] = value
            else:
                for name in [k for k in sub if k not in NESTED and k not in value]:
                    del sub[name]
                sub.update(value)


# --- frozen tasks: what a save need not serialize again ----------------------------------
_FINISHED = TaskState.FINISHED_MASK
_IMMUTABLE = frozenset({str, int, float, bool, type(None), bytes, Decimal, date, datetime,
                        timedelta, UUID})


class _Foreign(Exception):
    """A value in task data that is not JSON-like: its task is not frozen."""


def _owned(value, ids: list):
    """A deep copy of JSON-like task data, sharing nothing mutable with ``value``; the id of
    each mutable value of the copy is appended to ``ids``. (The immutable values, most of
    them, are told apart where they are found, without a call each.)"""
    cls = value.__class__
    if cls is dict:
        value = {k: v if v.__class__ in _IMMUTABLE else _owned(v, ids)
                 for k, v in value.items()}
    elif cls is list:
        value = [v if v.__class__ in _IMMUTABLE else _owned(v, ids) for v in value]
    elif cls in _IMMUTABLE:
        return value
    else:
        raise _Foreign
    ids.append(id(value))
    return value


def _owned_noting(value, ids: list, seen: list):
    """:func:`_owned`, also appending to ``seen`` the id of each mutable value of ``value``
    (what :func:`_mutables` finds in it)."""
    cls = value.__class__
    if cls is dict:
        seen.append(id(value))
        value = {k: v if v.__class__ in _IMMUTABLE else _owned_noting(v, ids, seen)
                 for k, v in value.items()}
    elif cls is list:
        seen.append(id(value))
        value = [v if v.__class__ in _IMMUTABLE else _owned_noting(v, ids, seen)
                 for v in value]
    elif cls in _IMMUTABLE:
        return value
    else:
        raise _Foreign
    ids.append(id(value))
    return value


def _mutables(value, out: list) -> None:
    """Append the id of every value inside ``value`` (itself included) that is not one of
    the immutable scalars, descending into dicts, lists, tuples and sets."""
    if value.__class__ in _IMMUTABLE:
        return
    stack = [value]
    pop, push, add = stack.pop, stack.append, out.append
    while stack:
        item = pop()
        add(id(item))
        cls = item.__class__
        if cls is dict:
            for inner in item.values():
                if inner.__class__ not in _IMMUTABLE:
                    push(inner)
        elif cls is list or cls is tuple or cls is set or cls is frozenset:
            for inner in item:
                if inner.__class__ not in _IMMUTABLE:
                    push(inner)


def _nothing(value, out: list) -> None:
    """No task is frozen: no value needs looking for."""


def _empty_fingerprint(task) -> tuple | None:
    """All a task's part is made of when its data and internal data are empty (a task not
    reached yet: SpiffWorkflow gives it data when it becomes ready), None otherwise (the
    part of such a task holds no data, :class:`EmptyDataTaskConverter`)."""
    if task.data or task.internal_data:
        return None
    return (task._state, task.last_state_change, task._parent, tuple(task._children),
            task.triggered, task.task_spec.name, task.parent is None)


def _children_finished(task, known: dict) -> bool:
    """Whether every child of the task is finished, noted in ``known`` (a save asks twice
    for each finished task it looks at)."""
    answer = known.get(task)
    if answer is None:
        answer = known[task] = all(child._state & _FINISHED for child in task.children)
    return answer


def _inherited_fingerprint(task) -> tuple | None:
    """All a task's part is made of when its data differs from its parent's only by plain
    values (strings, integers, booleans and None, or lists and dictionaries of them, under
    names that are strings: :func:`_plain_flat`), and its internal data holds plain values
    only (None otherwise): SpiffWorkflow's task converter then writes no data but the
    difference from the parent's (the names it sets, in its data's order, and the names it
    lacks, in its parent's), and the internal data as it is. Most live tasks are such: a
    reporting unit's tasks (its instance of the multi-instance activity differs by its
    unit), a waiting timer (its due time), a split whose branches run. The difference is
    found as the converter finds it (a name is set when it is not the parent's or its value
    is ``!=`` the parent's), and when the two dictionaries are ``==`` it is empty, unless a
    value differs from itself (a NaN: ``==`` takes it for equal to itself). A plain value's
    type is part of it: True is equal to 1, and written otherwise."""
    if task._parent is None:
        return None
    parent = task.workflow.tasks.get(task._parent)
    if parent is None:
        return None
    data, inherited = task.data, parent.data
    if data == inherited and not any(v != v for v in data.values()):
        difference = None
    else:
        sets: list[tuple] = []
        for key, value in data.items():
            if key not in inherited or value != inherited[key]:
                if key.__class__ is not str:
                    return None
                if value.__class__ in _PLAIN:
                    sets.append((key, value.__class__, value))
                else:
                    try:
                        sets.append((key, _plain_flat(value)))
                    except _Foreign:
                        return None
        lacks = []
        for key in inherited:
            if key not in data:
                if key.__class__ is not str:
                    return None
                lacks.append(key)
        difference = (tuple(sets), tuple(lacks))
    internal = task.internal_data
    if internal:
        for key, value in internal.items():
            if key.__class__ is not str or value.__class__ not in _PLAIN:
                return None
        internal = tuple((key, value.__class__, value) for key, value in internal.items())
    else:
        internal = None
    return (_INHERITED, task._state, task.last_state_change, task._parent,
            tuple(task._children), task.triggered, task.task_spec.name, difference, internal)


def _plain_flat(value) -> tuple:
    """A list or dictionary of plain values (and of such lists and dictionaries) laid flat:
    each container's type and size, then its names and items in order, each plain value
    with its type; two are equal only when their texts are. :class:`_Foreign` for anything
    else (a float among them: 0.0 is equal to -0.0)."""
    out: list = []
    _lay_flat(value, out)
    return tuple(out)


def _lay_flat(value, out: list) -> None:
    cls = value.__class__
    if cls is dict:
        out += (cls, len(value))
        for key, item in value.items():
            if key.__class__ is not str:
                raise _Foreign
            out.append(key)
            if item.__class__ in _PLAIN:
                out += (item.__class__, item)
            else:
                _lay_flat(item, out)
    elif cls is list:
        out += (cls, len(value))
        for item in value:
            if item.__class__ in _PLAIN:
                out += (item.__class__, item)
            else:
                _lay_flat(item, out)
    else:
        raise _Foreign


_INHERITED = "inherited"
# values whose text is the same for any two equal values of the same type
_PLAIN = frozenset({str, int, bool, type(None)})


def _fingerprint(task) -> tuple:
    """What a frozen task's part is made of, as far as it can change without its data
    changing in place: state, when it last changed, parent, children, whether it was
    triggered, its spec, and which dictionaries its data and internal data are."""
    return (task._state, task.last_state_change, task._parent, tuple(task._children),
            task.triggered, task.task_spec.name, id(task.data), len(task.data),
            id(task.internal_data), len(task.internal_data))


def _subprocess_fingerprint(subprocess) -> tuple | None:
    """All a subprocess's attributes part is made of (WorkflowConverter and
    BpmnSubWorkflowConverter's ``to_dict``), when its data and correlations are empty (None
    otherwise: values that can change in place)."""
    if subprocess.data or subprocess.correlations:
        return None
    last = subprocess.last_task
    return (last.id if last is not None else None, subprocess.success, subprocess.completed,
            subprocess.task_tree.id, subprocess.parent_task_id, subprocess.spec.name)


class Frozen:
    """The tasks a save left *frozen*: finished, every child of theirs finished (so no child
    will inherit their data again), and their data and internal data owned (deep-copied at
    that save: no other task or workflow holds a mutable value of theirs). A frozen task's
    part is what that save serialized, so the next save serializes it again only when

    - its fingerprint (:func:`_fingerprint`) changed (a reset, a retry, a child added or
      dropped, its data replaced, ...);
    - its parent is serialized again (a task's part is its data's difference from its
      parent's);
    - a mutable value of its data is found in what the save serializes anyway (the other
      tasks' data and internal data, the workflows' data and events): SpiffWorkflow copies
      task data one level deep, and a join merges the data of finished tasks into the task
      that goes on, so a value could be shared again and changed through the other task.

    - a join of its child's spec moved (a join merges the data of the parents of its spec's
      other tasks into its own).

    When in doubt a task is not frozen: data holding anything but JSON-like values; nothing is
    frozen by the first save after a load (a load shares values between a task's data and its
    parent's, and a workflow read for one step would pay for copies it does not keep).

    A frozen task's text is kept too, for the next snapshot. So is the text of each task
    whose data and internal data are empty (most tasks not reached yet), with all it is made
    of (:func:`_empty_fingerprint`): while that stays the same, so does the text; and of each
    task whose data differs from its parent's by plain values only and whose internal data
    is plain (most live tasks: :func:`_inherited_fingerprint`). (The texts of a national
    proposal's workflow take up to 46 KB of memory, where its tasks' data take 130 to 330
    KB once it has passed its plan.)"""

    def __init__(self):
        # a task (the object: a kept workflow keeps its tasks): its part's key, fingerprint,
        # the ids of its data's mutable values, its parent (the object), its part's text
        self.tasks: dict = {}
        self.owners: dict[int, object] = {}          # a mutable value's id: its task
        # a task with empty data (or its parent's), as the last save found it: its part's
        # key, its :func:`_empty_fingerprint` (:func:`_inherited_fingerprint`), text and
        # digest
        self.empty: dict = {}
        # a subprocess with empty data and correlations, as the last save found it: its
        # :func:`_subprocess_fingerprint`, its attributes' text and digest
        self.subprocesses: dict = {}

    def drop(self, task) -> None:
        entry = self.tasks.pop(task, None)
        if entry is not None:
            owners = self.owners
            for ident in entry[2]:
                if owners.get(ident) is task:
                    del owners[ident]

    @staticmethod
    def own(task, seen: list) -> list[int] | None:
        """Replace the task's data and internal data by copies of their own (:func:`_owned`)
        and return the ids of the copies' mutable values, noting in ``seen`` those of the
        values replaced; None, nothing replaced, when they hold a value that is not
        JSON-like."""
        ids: list[int] = []
        try:
            data = _owned_noting(task.data, ids, seen)
            internal = _owned_noting(task.internal_data, ids, seen)
        except _Foreign:
            return None
        task.data = data
        task.internal_data = internal
        return ids

    def freeze(self, key: str, task, text: str, ids: list[int] | None = None) -> None:
        """Own the task's data (unless :meth:`own` did, giving ``ids``) and note its
        fingerprint and text (the task's part as this save has it: the text of the data
        before the copy, equal to it)."""
        self.drop(task)
        if ids is None:
            ids = []
            try:
                data = _owned(task.data, ids)
                internal = _owned(task.internal_data, ids)
            except _Foreign:
                return
            task.data = data
            task.internal_data = internal
        self.tasks[task] = (key, _fingerprint(task), ids, task.parent, text)
        owners = self.owners
        for ident in ids:
            owners[ident] = task


class EmptyDataTaskConverter(TaskConverter):
    """SpiffWorkflow's task converter, but a task whose data is empty (most tasks not
    reached yet) is written with that empty data and no delta, as SpiffWorkflow writes a
    task without a parent, instead of a delta deleting every name of its parent's data.
    SpiffWorkflow loads it as the same task (without a delta it takes the data as written)
    and both forms load, so states stored before read as they did; the part no longer
    changes whenever its parent's data gains a name (a national proposal's saves wrote
    about 100 such parts, 70 KB of their text, for nothing), and a load no longer copies
    the parent's data to delete all of it."""

    def to_dict(self, task):
        if task.data or task.parent is None:
            return super().to_dict(task)
        return {
            "id": str(task.id),
            "parent": str(task._parent),
            "children": [str(child) for child in task._children],
            "last_state_change": task.last_state_change,
            "state": task.state,
            "task_spec": task.task_spec.name,
            "triggered": task.triggered,
            "internal_data": self.registry.convert(task.internal_data),
            "data": {},
            "delta": {},
        }


class InstanceStateConverter(BpmnWorkflowConverter):
    """Converts a top-level workflow without its spec and subprocess specs."""

    def to_dict(self, workflow):
        dct = WorkflowConverter.to_dict(self, workflow)
        dct["subprocesses"] = self.mapping_to_dict(workflow.subprocesses)
        dct["bpmn_events"] = self.registry.convert(workflow.bpmn_events)
        return dct

    def from_state(self, dct, spec, subprocess_specs):
        workflow = self.target_class(spec, subprocess_specs, deserializing=True)
        workflow.tasks = self.mapping_from_dict(dct["tasks"], UUID, workflow=workflow)
        workflow.task_tree = workflow.tasks.get(UUID(dct["root"]))
        self.set_default_attributes(workflow, dct)
        self.subprocesses_from_dict(dct["subprocesses"], workflow)
        workflow.bpmn_events = self.registry.restore(dct.pop("bpmn_events", []))
        return workflow


# values orjson writes without a float of theirs: itself or through the registry's encoder
_NO_FLOATS = frozenset({str, int, bool, type(None), date, datetime, timedelta, Decimal, UUID})


def _may_write_non_finite(value) -> bool:
    """Whether orjson may write a NaN or an infinity (as ``null``) for ``value``: a float in
    it is not finite, or it holds a value of another type than the plain ones, dates,
    times, decimals and ids, whose encoding could hold one."""
    stack = [value]
    pop, push = stack.pop, stack.append
    while stack:
        item = pop()
        cls = item.__class__
        if cls is dict:
            for inner in item.values():
                if inner.__class__ not in _NO_FLOATS:
                    push(inner)
        elif cls is list or cls is tuple:
            for inner in item:
                if inner.__class__ not in _NO_FLOATS:
                    push(inner)
        elif cls is float:
            if not math.isfinite(item):
                return True
        elif cls not in _NO_FLOATS:
            return True
    return False


class Codec:
    """Turns specs and workflows into JSON text and back."""

    def __init__(self):
        config = dict(SPIFF_CONFIG)
        for engine_timer in (*ENGINE_TIMERS.values(), *START_TIMERS.values()):
            config[engine_timer] = TimerConditionalEventDefinitionConverter
        # the engine's multi-instance activities (engine.multi_instance) have SpiffWorkflow's
        # type names and are registered after SpiffWorkflow's: every spec loads as them
        for ours, spiffs in REPLACED_TASK_SPECS:
            config[ours] = SPIFF_CONFIG[spiffs]
        config[Task] = EmptyDataTaskConverter
        self.registry = BpmnWorkflowSerializer.configure(config)
        self.registry.register(date, lambda v: {"value": v.isoformat()},
                               lambda v: date.fromisoformat(v["value"]))
        self.registry.register(Decimal, lambda v: {"value": str(v)},
                               lambda v: Decimal(v["value"]))
        # a task's id (engine.task_ids) wherever it lands is written as SpiffWorkflow writes
        # a UUID, and read back as one
        self.registry.register(TaskId, lambda v: {"value": str(v)},
                               lambda v: UUID(v["value"]), typename="UUID")
        # SpiffWorkflow's workflows are written as they were; a state loads as the engine's
        # (engine.multi_instance.BpmnWorkflow, registered under the same name)
        self._state = InstanceStateConverter(EngineWorkflow, self.registry)
        self._serializer = BpmnWorkflowSerializer(self.registry)
        self._encoder = self._serializer._encoder_cls(separators=(",", ":"), ensure_ascii=False)

    # specs --------------------------------------------------------------------
    def dump_spec(self, spec, subprocess_specs: dict) -> str:
        return json.dumps({
            "spec": self.registry.convert(spec),
            "subprocess_specs": {name: self.registry.convert(s)
                                 for name, s in subprocess_specs.items()},
        })

    def load_spec(self, text: str):
        dct = json.loads(text)
        spec = self.registry.restore(dct["spec"])
        subprocess_specs = {name: self.registry.restore(s)
                            for name, s in dct["subprocess_specs"].items()}
        return spec, subprocess_specs

    # instance state ------------------------------------------------------------
    def dump_state(self, workflow: BpmnWorkflow) -> bytes:
        return compress_state(self.state_json(workflow))

    def state_json(self, workflow: BpmnWorkflow) -> str:
        """The workflow's state as JSON text (what SpiffWorkflow's ``serialize_json`` gives,
        written compact)."""
        serializer = self._serializer
        self.registry._encoder_mode = True     # as serialize_json: the encoder may convert
        try:
            dct = serializer.to_dict(workflow)
            dct[serializer.VERSION_KEY] = serializer.VERSION
            return json.dumps(dct, cls=serializer._encoder_cls, separators=(",", ":"),
                              ensure_ascii=False)
        finally:
            self.registry._encoder_mode = False

    def _dumps(self, value) -> str:
        """``value`` as compact JSON text: orjson's (a tenth of the time of json's encoder,
        a large part of saving a reporting cycle's tens of thousands of tasks), or json's
        (``separators=(",", ":"), ensure_ascii=False``) where the two could differ in what
        the text reads back as: orjson refuses a key that is not a string (json writes it
        as one), an integer over 64 bits, a lone surrogate; and it writes NaN and the
        infinities as ``null``, so a text with a ``null`` is orjson's only when it reads
        back as the value (a None, most often, not a NaN), or when the value holds no float
        that is not finite (:func:`_may_write_non_finite`: a value holding dates reads back
        otherwise). Either way the same value gives the same text (a part's digest depends
        on it)."""
        try:
            text = orjson.dumps(value, default=self._encoder.default, option=_ORJSON_OPTIONS)
        except TypeError:               # orjson.JSONEncodeError
            return self._encoder.encode(value)
        if b"null" in text and orjson.loads(text) != value and _may_write_non_finite(value):
            return self._encoder.encode(value)
        return text.decode()

    def state_parts(self, workflow: BpmnWorkflow) -> dict[str, str]:
        """The workflow's state cut into parts (see the module's docstring)."""
        serializer = self._serializer
        self.registry._encoder_mode = True
        try:
            dct = serializer.to_dict(workflow)
            dct[serializer.VERSION_KEY] = serializer.VERSION
            return parts_of(dct, self._dumps)
        finally:
            self.registry._encoder_mode = False

    def changed_parts(self, workflow: BpmnWorkflow, stored: StoredState | None, *,
                      whole: bool = False
                      ) -> tuple[dict[str, str], dict[str, bytes], Frozen, int]:
        """The parts a save must write, serializing only the tasks that may have changed since
        ``stored`` (the last save) and reusing its digests for the frozen ones (see
        :class:`Frozen`) and for the tasks with empty data (or their parent's) whose part is
        made of the same as then; ``whole``: every part's text (a snapshot), those reused
        included. Returns the texts of the parts serialized (all of them when ``whole``),
        the digests of all the parts, the tasks frozen now, for the next save, and how many
        parts it serialized."""
        # the first save after a load (or of a new instance) freezes nothing: a workflow read
        # from the store for one step (another process's instance, a timer firing) does not
        # pay for copying data it will not keep; the next save of a kept workflow freezes
        kept_frozen = stored.frozen if stored is not None else None
        freezing = kept_frozen is not None
        frozen = kept_frozen if kept_frozen is not None else Frozen()
        before = frozen.tasks
        empty_before, empty_now = frozen.empty, {}
        known = stored.parts if stored is not None else {}
        groups = [("t:", workflow)] + [(f"s:{sub_id}:", sub)
                                       for sub_id, sub in workflow.subprocesses.items()]
        # 1. the frozen tasks whose fingerprint is unchanged (candidates to skip), the tasks
        # with empty data whose part is made of the same as at the last save (kept as they
        # are), and the values of everything else, where a value of a frozen task must not
        # be found
        candidates: set = set()
        kept: dict = {}                 # a task with empty data (or its parent's): its
                                        # fingerprint
        owned: dict = {}                # a task to freeze, its data owned already: the ids
        finished: dict = {}             # a finished task: whether its children are
        seen: list[int] = []
        joins: set = set()
        walk = _mutables if frozen.owners else _nothing
        for _, wf in groups:
            walk(wf.data, seen)
            for task in wf.tasks.values():
                if task._state & _FINISHED:
                    entry = before.get(task)
                    if entry is not None and entry[1] == _fingerprint(task):
                        candidates.add(task)
                        continue
                empty = _empty_fingerprint(task)
                if empty is not None:
                    kept[task] = empty
                elif freezing and task._state & _FINISHED and _children_finished(
                        task, finished) and (ids := frozen.own(task, seen)) is not None:
                    owned[task] = ids           # frozen below: its values looked at here
                else:
                    # (looked for in a kept workflow only, as frozen tasks are: a new
                    # instance, or one read for one step, would not reuse it)
                    inherited = _inherited_fingerprint(task) if freezing else None
                    if inherited is not None:
                        kept[task] = inherited
                    walk(task.data, seen)
                    walk(task.internal_data, seen)
                if isinstance(task.task_spec, UnstructuredJoin):
                    joins.add(task.task_spec)
        if joins and candidates:
            # a join that moved may have merged the data of the parents of its spec's other
            # tasks (UnstructuredJoin._run_hook): values of theirs may be shared again
            for _, wf in groups:
                for task in wf.tasks.values():
                    if task.task_spec in joins:
                        candidates.discard(task.parent)
        walk(workflow.correlations, seen)
        for event in workflow.bpmn_events or ():
            walk(getattr(event, "payload", None), seen)
        owners = frozen.owners
        for ident in seen:
            owner = owners.get(ident)
            if owner is not None:      # shared again: serialized, and owned anew below
                candidates.discard(owner)
        # 2. a candidate is skipped when its parent is skipped too (or it has none)
        skipped: set = set()
        for task in list(candidates):
            chain = []
            node = task
            while node is not None and node in candidates and node not in skipped:
                chain.append(node)
                node = before[node][3]
            if node is None or node in skipped:
                skipped.update(chain)
            else:                       # a parent serialized again
                candidates.difference_update(chain)
        # 3. serialize the rest; freeze what can be frozen
        texts: dict[str, str] = {}
        parts: dict[str, bytes] = {}
        serialized = 1                  # the workflow's attributes; then each part made
        dumps, convert = self._dumps, self.registry.convert
        subprocesses_before, subprocesses_now = frozen.subprocesses, {}
        self.registry._encoder_mode = True
        try:
            for prefix, wf in groups:
                if wf is workflow:
                    own_key = WORKFLOW_PART
                    texts[own_key] = self._attributes(wf, True)
                    parts[own_key] = digest(texts[own_key])
                else:
                    # a unit's subprocess in a reporting cycle: the same text step after
                    # step while its last task and flags stay (its data empty)
                    own_key = prefix[:-1]
                    fingerprint = _subprocess_fingerprint(wf)
                    kept_attributes = subprocesses_before.get(wf)
                    if kept_attributes is None or fingerprint is None \
                            or kept_attributes[0] != fingerprint:
                        text = self._attributes(wf, False)
                        kept_attributes = (fingerprint, text, digest(text))
                        serialized += 1
                    if fingerprint is not None:
                        subprocesses_now[wf] = kept_attributes
                    texts[own_key], parts[own_key] = kept_attributes[1:]
                for task_id, task in wf.tasks.items():
                    if task in skipped:
                        entry = before[task]
                        key = entry[0]
                        parts[key] = known[key]
                        if whole:               # a snapshot: frozen, and stays so
                            texts[key] = entry[4]
                        continue
                    empty = kept.get(task)
                    entry = empty_before.get(task) if empty is not None else None
                    if entry is not None and entry[1] == empty:
                        key, _, text, part_digest = entry
                        parts[key] = part_digest
                        if whole:
                            texts[key] = text
                    else:
                        key = prefix + str(task_id)
                        text = texts[key] = dumps(convert(task))
                        part_digest = parts[key] = digest(text)
                        serialized += 1
                    if empty is not None:
                        empty_now[task] = (key, empty, text, part_digest)
                    if freezing and task._state & _FINISHED and _children_finished(
                            task, finished):
                        frozen.freeze(key, task, text, owned.get(task))
                    elif task in frozen.tasks:
                        frozen.drop(task)
        finally:
            self.registry._encoder_mode = False
        frozen.empty = empty_now
        frozen.subprocesses = subprocesses_now
        if len(frozen.tasks) > len(parts):
            # tasks (or subprocesses) that went away: a reset, a loop's tasks dropped
            live = {id(wf) for _, wf in groups}
            for task in [t for t in frozen.tasks if id(t.workflow) not in live
                         or t.workflow.tasks.get(t.id) is not t]:
                frozen.drop(task)
        return texts, parts, frozen, serialized

    def _attributes(self, wf, top: bool) -> str:
        """The part of a workflow or subprocess without its tasks and subprocesses."""
        tasks = wf.tasks
        wf.tasks = {}
        if top:
            subprocesses, wf.subprocesses = wf.subprocesses, {}
        try:
            dct = self.registry.convert(wf)
        finally:
            wf.tasks = tasks
            if top:
                wf.subprocesses = subprocesses
        if top:
            dct[self._serializer.VERSION_KEY] = self._serializer.VERSION
        return self._dumps(_without(dct, NESTED))

    @staticmethod
    def snapshot(parts: dict[str, str]) -> bytes:
        """The stored whole state of these parts, compressed a batch of pieces at a time at
        the level of the parts' characters (:func:`compression_level`; the whole text is a
        little longer: what :meth:`dump_state` gives, byte for byte, unless the two sit
        either side of the limit)."""
        compressor = zlib.compressobj(compression_level(sum(map(len, parts.values()))))
        out: list[bytes] = []
        batch: list[str] = []
        size = 0
        for piece in _state_pieces(parts):
            batch.append(piece)
            size += len(piece)
            if size >= SNAPSHOT_BATCH:
                out.append(compressor.compress("".join(batch).encode("utf-8")))
                batch, size = [], 0
        out.append(compressor.compress("".join(batch).encode("utf-8")))
        out.append(compressor.flush())
        return b"".join(out)

    @staticmethod
    def delta(before: dict[str, bytes], after: dict[str, str],
              after_digests: dict[str, bytes]) -> bytes | None:
        """The stored delta that turns state ``before`` (its parts' digests) into the state of
        digests ``after_digests``, of which ``after`` holds the texts of the parts serialized
        (every part that may have changed, :meth:`changed_parts`), None when nothing changed:
        the parts that changed or are new, and the keys of those that went away."""
        changed = [f"{json.dumps(key)}:{text}" for key, text in after.items()
                   if before.get(key) != after_digests[key]]
        gone = [key for key in before if key not in after_digests]
        if not changed and not gone:
            return None
        return compress_state('{"set":{' + ",".join(changed) + '},"del":'
                              + json.dumps(gone) + "}")

    def load_state(self, blob: bytes, spec, subprocess_specs, script_engine,
                   deltas: Sequence[bytes] = ()) -> BpmnWorkflow:
        """The workflow of a stored snapshot and the deltas written after it (in order);
        what was read is kept on the workflow (:func:`stored_state`) for the next save."""
        try:
            dct = json.loads(state_text(blob))
            for delta in deltas:
                apply_delta(dct, json.loads(state_text(delta)))
        except json.JSONDecodeError as exc:
            raise UnreadableState(f"the stored state is not JSON ({exc})") from None
        except (KeyError, TypeError, AttributeError) as exc:
            raise UnreadableState(f"a stored delta does not fit its state ({exc!r})") from None
        parts = digests(parts_of(dct, self._dumps))
        dct.pop(BpmnWorkflowSerializer.VERSION_KEY, None)
        workflow = self._state.from_state(dct, spec, subprocess_specs)
        workflow.script_engine = script_engine
        set_stored_state(workflow, StoredState(parts, len(deltas)))
        return workflow


def stored_state(workflow: BpmnWorkflow) -> StoredState | None:
    """What the store holds of this workflow (None: nothing yet, a new instance)."""
    return getattr(workflow, "_nd73_stored", None)


def set_stored_state(workflow: BpmnWorkflow, stored: StoredState) -> None:
    workflow._nd73_stored = stored
