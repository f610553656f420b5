"""Multi-instance activities whose instances do not carry the collections, and workflows with
many subprocesses.

SpiffWorkflow gives each instance of a multi-instance activity the activity's whole data,
including the collection it iterates (``loopDataInputRef``) and the one its instances fill
(``loopDataOutputRef``): the instance inherits a copy of them, an embedded subprocess
deep-copies them again into its start, every script inside the instance measures them, and the
state stores them once per subprocess (its start's data is stored whole). A reporting cycle
iterates its reporting units, so each of its N instances held the list of all N: opening a
cycle cost O(N²) in time, memory, data checks and stored state (5,000 units: 25 million copied
list items).

Here an instance is created while the activity shows it its data *without* the two
collections: the instance sees its own item (``inputDataItem``) and everything else the
activity had, as before, but not the collections; its result still goes into the output
collection (``outputDataItem``), which the activity keeps as it was. A script inside an
instance that needs something of the whole collection takes it into a variable of its own
before the activity.

The activity's own data is not touched: the instance is created against a filtered copy of
the activity's data (its keys in the same order) and the activity's dictionary is put back
unchanged. (Taking the collections out of the activity's dictionary and putting them back
moves them to its end; SpiffWorkflow stores each task's data as what it deleted and changed
against its parent's, and lists the deleted keys in the parent's order, which a reload builds
in the original order: the state written after the step and the one read back differed.)

The classes keep SpiffWorkflow's names and are registered in :class:`engine.serialization.Codec`
after SpiffWorkflow's own, so every deployed spec, and every stored state, loads as these
classes; the stored form of specs and states does not change.

SpiffWorkflow's ``Task._set_state`` is replaced by one that builds its log record only when
the ``spiff.task`` logger emits it (:func:`_set_state`); the records, when emitted, are the
same. The tasks it makes get their ids from :func:`engine.task_ids.new_task_id` (ids that keep
their text).
"""
from __future__ import annotations

import copy
import gc
import logging
import sys
import threading
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from time import time as wall_clock

from SpiffWorkflow.bpmn import BpmnWorkflow as SpiffBpmnWorkflow
from SpiffWorkflow.bpmn.specs.control import _EndJoin as SpiffEndJoin
from SpiffWorkflow.bpmn.specs.mixins.multiinstance_task import MultiInstanceTask
from SpiffWorkflow.bpmn.util.subworkflow import BpmnSubWorkflow as SpiffBpmnSubWorkflow
from SpiffWorkflow.bpmn.util.task import BpmnTaskIterator
from SpiffWorkflow.spiff.specs.defaults import (
    ParallelMultiInstanceTask as SpiffParallelMultiInstanceTask,
)
from SpiffWorkflow.spiff.specs.defaults import (
    SequentialMultiInstanceTask as SpiffSequentialMultiInstanceTask,
)
from SpiffWorkflow.spiff.specs.defaults import SubWorkflowTask as SpiffSubWorkflowTask
from SpiffWorkflow.spiff.specs.defaults import (
    TransactionSubprocess as SpiffTransactionSubprocess,
)
from SpiffWorkflow.task import Task
from SpiffWorkflow.util.task import TaskState

from engine import task_ids


def collection_names(task_spec) -> tuple[str, ...]:
    """The variables a multi-instance activity iterates and fills (none for other tasks)."""
    if not isinstance(task_spec, MultiInstanceTask):
        return ()
    names = []
    for reference in (task_spec.data_input, task_spec.data_output):
        name = getattr(reference, "bpmn_id", None)
        if name is not None and name not in names:
            names.append(name)
    return tuple(names)


def workflow_collections(workflow) -> frozenset[str]:
    """The variables the multi-instance activities of a workflow's definition (its process
    and subprocesses) iterate and fill; computed once per loaded spec."""
    top = workflow.top_workflow
    names = getattr(top.spec, "_nd73_collections", None)
    if names is None:
        names = frozenset(name for spec in (top.spec, *top.subprocess_specs.values())
                          for task_spec in spec.task_specs.values()
                          for name in collection_names(task_spec))
        top.spec._nd73_collections = names
    return names


class _InstancesWithoutCollections:
    """Creates each instance against the activity's data without its collections."""

    def create_child(self, my_task, item, key_or_index=None):
        if len(my_task._children) >= LARGE_STEP_SUBPROCESSES:      # its instances so far
            large_step()
        data = my_task.data
        names = [name for name in collection_names(self) if name in data]
        if not names:
            return super().create_child(my_task, item, key_or_index)
        my_task.data = {key: value for key, value in data.items() if key not in names}
        try:
            return super().create_child(my_task, item, key_or_index)
        finally:
            my_task.data = data


class ParallelMultiInstanceTask(_InstancesWithoutCollections, SpiffParallelMultiInstanceTask):
    pass


class SequentialMultiInstanceTask(_InstancesWithoutCollections,
                                  SpiffSequentialMultiInstanceTask):
    pass


# Values no one can change, kept as they are (the exact types: a subclass may add state).
# deepcopy keeps the numbers, strings and Decimals itself but rebuilds a date or a datetime
# through its reduce protocol (10 µs an aware datetime); a reporting cycle's data holds
# several (its deadlines), which every unit's subprocess copied: most of the copy's cost.
_SHARED = frozenset((str, int, float, bool, type(None), bytes, complex,
                     date, datetime, time, timedelta, Decimal))


def data_copy(value):
    """``copy.deepcopy`` of task data: dicts and lists copied by a plain walk, immutable
    values (strings, numbers, booleans, None, dates, times, Decimals...) kept, anything
    else deep-copied.
    Unlike deepcopy, a dict or list found twice becomes two copies; task data is stored as
    JSON, which never shares them, so a step from the stored state saw two already."""
    kind = type(value)
    if kind is dict:
        return {key: data_copy(item) for key, item in value.items()}
    if kind is list:
        return [data_copy(item) for item in value]
    if kind in _SHARED:
        return value
    return copy.deepcopy(value)


def create_subprocess(top, my_task, spec_name: str):
    """``top.create_subprocess(my_task, spec_name)``: the subprocess of ``my_task``, its tree
    of tasks predicted from its spec's start, its root made ready. The prediction (the
    specs' ``_predict``: each task's children synced with its spec's outputs, their states
    set, a log record's extras built at each change) depends on the spec alone, for a new
    subprocess holds no data yet; the first subprocess of a spec predicts its tree and
    notes it (each task's spec, state, parent and thread), the next ones make their tasks
    from that note, in the same order, with the same children in the same order (most of
    starting a reporting cycle's unit was its prediction). A tree whose tasks got data, or
    whose children are not in the order the tasks were made, is not noted."""
    spec = top.subprocess_specs[spec_name]
    subprocess = BpmnSubWorkflow(spec, parent_task_id=my_task.id, top_workflow=top,
                                 deserializing=True)
    # SpiffWorkflow's Workflow.__init__, not deserializing: root, prediction, log, ready
    predicted = getattr(spec, "_nd73_predicted", None)
    if predicted is None:
        subprocess.task_tree = Task(subprocess, spec.start, state=TaskState.FUTURE)
        subprocess.task_tree.task_spec._predict(subprocess.task_tree,
                                                mask=TaskState.NOT_FINISHED_MASK)
        spec._nd73_predicted = _prediction_of(subprocess) or False
    else:
        made: list = []
        for task_spec, state, parent, thread_id, triggered in predicted or ():
            task = Task(subprocess, task_spec, made[parent] if parent >= 0 else None,
                        state=state)
            task.thread_id, task.triggered = thread_id, triggered
            made.append(task)
        if not made:                    # not noted: predicted as SpiffWorkflow predicts
            made.append(Task(subprocess, spec.start, state=TaskState.FUTURE))
            made[0].task_spec._predict(made[0], mask=TaskState.NOT_FINISHED_MASK)
        subprocess.task_tree = made[0]
    if _spiff_workflow_log.isEnabledFor(logging.INFO):
        _spiff_workflow_log.info("Initialized workflow", extra=subprocess.collect_log_extras())
    subprocess.task_tree._ready()
    top.subprocesses[my_task.id] = subprocess
    return subprocess


def _prediction_of(subprocess) -> tuple | None:
    """A new subprocess's predicted tree as :func:`create_subprocess` notes it: for each of
    its tasks in the order they were made, its spec, state, parent's place in that order
    (-1: the root), thread and whether it was triggered; None when it cannot be made again
    from that (a task holds data, children not in the order made, another root)."""
    tasks = list(subprocess.tasks.values())
    if not tasks or tasks[0] is not subprocess.task_tree:
        return None
    place = {task.id: n for n, task in enumerate(tasks)}
    noted = []
    children: dict = {}
    for task in tasks:
        if task.data or task.internal_data:
            return None
        parent = place.get(task._parent, -1) if task._parent is not None else -1
        if task._parent is not None and task._parent not in place:
            return None
        children.setdefault(task._parent, []).append(task.id)
        noted.append((task.task_spec, task._state, parent, task.thread_id, task.triggered))
    if any(task._children != children.get(task.id, []) for task in tasks):
        return None
    return tuple(noted)


def _start_of(subworkflow):
    """A subprocess's ``Start`` task: its root (SpiffWorkflow looks for it with a walk of
    the tree, a task iterator and filter each time, twice for each subprocess started)."""
    root = subworkflow.task_tree
    if root.task_spec.name == "Start":
        return root
    return subworkflow.get_next_task(spec_name="Start")


class _SubprocessDataCopied:
    """An embedded subprocess copies its task's data into its start, and its last task's
    data back, with :func:`data_copy` (SpiffWorkflow's deepcopy, with its memo of every
    object, was a seventh of a reporting cycle's opening: one copy per unit)."""

    def start_workflow(self, my_task):
        """SpiffWorkflow's, with the subprocess made by :func:`create_subprocess` and its
        start found as :func:`_start_of` finds it."""
        top = my_task.workflow.top_workflow
        if self.spec not in top.subprocess_specs:
            return super().start_workflow(my_task)         # refused, as there
        subworkflow = create_subprocess(top, my_task, self.spec)
        subworkflow.completed_event.connect(self._on_subworkflow_completed, my_task)
        self.copy_data(my_task, subworkflow)
        _start_of(subworkflow).run()

    def copy_data(self, my_task, subworkflow):
        _start_of(subworkflow).set_data(**data_copy(my_task.data))

    def update_data(self, my_task, subworkflow):
        my_task.data = data_copy(subworkflow.last_task.data)


class SubWorkflowTask(_SubprocessDataCopied, SpiffSubWorkflowTask):
    pass


class TransactionSubprocess(_SubprocessDataCopied, SpiffTransactionSubprocess):
    pass


# the logger SpiffWorkflow's workflows log their creation with
_spiff_workflow_log = logging.getLogger("spiff.workflow")


class _WaitingTasksWalked:
    """A workflow whose waiting tasks are found by a plain walk (:func:`waiting_tasks`):
    SpiffWorkflow updates them after each of its tasks completes (three times as each of a
    reporting cycle's units starts; a twelfth of a proposal's step), each time with a task
    iterator that copies its list of pending tasks at every task and builds a log record's
    filter."""

    def update_waiting_tasks(self) -> None:
        for task in waiting_tasks(self):
            task.task_spec._update(task)


class BpmnWorkflow(_WaitingTasksWalked, SpiffBpmnWorkflow):
    """A top-level workflow whose waiting tasks are walked for (:class:`_WaitingTasksWalked`).
    The engine creates and loads its workflows as this class; it keeps SpiffWorkflow's name,
    so the stored states do not change."""


class BpmnSubWorkflow(_WaitingTasksWalked, SpiffBpmnSubWorkflow):
    """A subprocess whose waiting tasks are walked for (:class:`_WaitingTasksWalked`)."""

    def get_tasks(self, first_task=None, **kwargs) -> list:
        """SpiffWorkflow's; the tasks of a spec's name (a start event's run looks for its
        own, once for each unit of a reporting cycle) by :func:`tasks_named`."""
        if kwargs.keys() == {"spec_name"}:
            return tasks_named(first_task or self.task_tree, kwargs["spec_name"])
        return super().get_tasks(first_task, **kwargs)


# SpiffWorkflow's task iterators stop descending this deep
_SPIFF_MAX_DEPTH = 1000


def waiting_tasks(workflow):
    """The tasks of ``workflow`` in the WAITING state (not in its subprocesses), found as
    SpiffWorkflow's ``TaskIterator(workflow.task_tree, state=TaskState.WAITING)`` finds
    them (:func:`_walked`)."""
    return _walked(workflow, TaskState.WAITING, TaskState.FUTURE)


def _walked(workflow, state: int, min_state: int, end_at_spec: str | None = None):
    """The tasks of ``workflow`` (not of its subprocesses) in ``state``, found as
    SpiffWorkflow's ``TaskIterator`` finds them, lazily: depth first, a task's children
    taken when it is reached (before it is given to the caller, who may change the tree),
    entered only when its state is ``min_state`` or later (the iterator's rule for the
    state asked), it is less than SpiffWorkflow's 1,000 levels deep and not of the spec
    ``end_at_spec``."""
    tasks = workflow.tasks
    stack = [(workflow.task_tree, 0)]
    pop, push = stack.pop, stack.append
    while stack:
        task, depth = pop()
        if task._children and task._state >= min_state and depth < _SPIFF_MAX_DEPTH \
                and task.task_spec.name != end_at_spec:
            for child in reversed(task._children):
                push((tasks.get(child), depth + 1))
        if task._state & state and task.last_state_change >= 0:
            yield task


def tasks_named(first, spec_name: str) -> list:
    """The tasks of spec ``spec_name`` from ``first`` down, through the subprocesses its
    tasks run: what :class:`UnboundedTaskIterator` lists for ``spec_name`` alone (every
    state, subprocesses entered, without a depth bound), in one loop."""
    subprocesses = first.workflow.top_workflow.subprocesses
    found = []
    stack = [first]
    pop, push = stack.pop, stack.append
    while stack:
        task = pop()
        subprocess = subprocesses.get(task.id)
        if task._children or subprocess is not None:
            tasks = task.workflow.tasks
            stack.extend([tasks.get(child) for child in reversed(task._children)])
            if subprocess is not None:
                push(subprocess.task_tree)
        if task.task_spec.name == spec_name and task.last_state_change >= 0:
            found.append(task)
    return found


class _EndJoin(SpiffEndJoin):
    """SpiffWorkflow's join before a process's end, which waits for every other unfinished
    task of its workflow, looking for one by a plain walk: SpiffWorkflow's task iterator
    (the same tasks: not below a task of this spec, nor deeper than its bound) ran
    each time a branch reached the end (a twentieth of a proposal's SpiffWorkflow time)."""

    def _check_threshold_unstructured(self, my_task) -> bool:
        return all(task is my_task for task in _walked(
            my_task.workflow, TaskState.NOT_FINISHED_MASK, TaskState.MAYBE, self.name))


# (ours, SpiffWorkflow's): the codec registers ours under the same type name, after it
REPLACED_TASK_SPECS = (
    (_EndJoin, SpiffEndJoin),
    (ParallelMultiInstanceTask, SpiffParallelMultiInstanceTask),
    (SequentialMultiInstanceTask, SpiffSequentialMultiInstanceTask),
    (SubWorkflowTask, SpiffSubWorkflowTask),
    (TransactionSubprocess, SpiffTransactionSubprocess),
    (BpmnSubWorkflow, SpiffBpmnSubWorkflow),          # a subprocess, not a task spec
)


# SpiffWorkflow's task iterator adds a level of depth for every subprocess it enters but
# climbs back only within the subprocess, so each instance of a multi-instance subprocess it
# passes leaves one level behind; at its default max_depth of 1000 it stops descending, and
# the tasks of the later instances went missing (a reporting cycle for 2,000 units opened 993
# report tasks). The engine lists a workflow's tasks without that bound.
UNBOUNDED_DEPTH = sys.maxsize


class UnboundedTaskIterator(BpmnTaskIterator):
    """SpiffWorkflow's depth-first task iterator (the same tasks in the same order, the same
    filters, subprocesses entered under the same conditions) without a depth bound, and
    with its pending tasks on a stack.

    SpiffWorkflow's keeps them in a list it takes from the front (``pop(0)``) and to whose
    front it adds each task's children (``children + task_list``): every task visited
    copies the whole list. Past a multi-instance activity the list holds its N instances,
    so one walk through N subprocesses cost O(N²) (a reporting cycle for 20,000 units: 35 s
    for the one walk of its opening step, 0.4 s at 5,000). Here the stack's end is the
    list's front: a task costs the number of its children."""

    def __init__(self, task, **kwargs):
        super().__init__(task, max_depth=UNBOUNDED_DEPTH, **kwargs)
        if not self.depth_first:
            raise ValueError("UnboundedTaskIterator walks depth first only")

    def _next(self):
        stack = self.task_list
        if not stack:
            raise StopIteration()
        task = stack.pop()
        subprocess = task.workflow.top_workflow.subprocesses.get(task.id)
        if (task._children or subprocess is not None) and \
                (task.state >= self.min_state or subprocess is not None) and \
                task.task_spec.name != self.end_at_spec:
            stack.extend(reversed(task.children))
            # as SpiffWorkflow's: not into a completed subprocess to look for unfinished tasks
            if not (subprocess is None or self.skip_subprocesses
                    or (task.state >= TaskState.FINISHED_MASK
                        and self.task_filter.state <= TaskState.FINISHED_MASK)):
                stack.append(subprocess.task_tree)
        return task


def all_tasks(workflow, **filters) -> list:
    """``workflow.get_tasks(**filters)`` through every subprocess, however many."""
    subprocesses = workflow.top_workflow.subprocesses
    if len(subprocesses) >= LARGE_STEP_SUBPROCESSES:
        large_step()
    if filters.keys() == {"state"}:
        return _tasks_in_state(workflow.task_tree, filters["state"], subprocesses)
    return list(UnboundedTaskIterator(workflow.task_tree, **filters))


def _tasks_in_state(root, state: int, subprocesses: dict) -> list:
    """:class:`UnboundedTaskIterator`'s walk filtered by state only (the engine's walks
    after each step), in one loop over the tasks' own attributes: the same tasks in the
    same order (the iterator's descent rule, its ``min_state`` for the state asked, no
    end spec), without an iterator, a filter object and a children list per task (a
    walk of a cycle's N units is most of the CPU of a unit's report outside the state's
    serialization)."""
    if state & TaskState.PREDICTED_MASK:
        min_state = TaskState.MAYBE
    elif state & TaskState.DEFINITE_MASK:
        min_state = TaskState.FUTURE
    else:
        min_state = TaskState.COMPLETED
    not_into_finished = state <= TaskState.FINISHED_MASK
    found = []
    stack = [root]
    pop, push = stack.pop, stack.append
    while stack:
        task = pop()
        task_state = task._state
        subprocess = subprocesses.get(task.id)
        if subprocess is not None:
            tasks = task.workflow.tasks
            stack.extend([tasks.get(child) for child in reversed(task._children)])
            if not (task_state >= TaskState.FINISHED_MASK and not_into_finished):
                push(subprocess.task_tree)
        elif task._children and task_state >= min_state:
            tasks = task.workflow.tasks
            stack.extend([tasks.get(child) for child in reversed(task._children)])
        if task_state & state and task.last_state_change >= 0:
            found.append(task)
    return found


def _may_run(workflow, subprocesses: dict) -> bool:
    """Whether a walk of ``workflow`` (with the subprocesses its tasks run, however deep)
    may find a ready task the engine runs: one of its tasks, or of theirs, is ready and not
    manual. A plain look at each task's state, without the iterator's filters and lists."""
    for task in workflow.tasks.values():
        if task._state == TaskState.READY and not task.task_spec.manual:
            return True
        sub = subprocesses.get(task.id)
        if sub is not None and sub is not workflow and _may_run(sub, subprocesses):
            return True
    return False


def do_engine_steps(workflow, did_complete_task=None) -> None:
    """``BpmnWorkflow.do_engine_steps``: the same passes in the same order (each active
    subprocess, deepest first, until it has no ready task left, its parent task updated;
    then the ready tasks of the whole workflow; again while a pass ran something or opened
    subprocesses), each walk for ready tasks through :func:`all_tasks`. SpiffWorkflow's own
    walk of the top workflow, once a pass, went through its bounded, quadratic iterator
    (a reporting cycle for 20,000 units: 1.4 s a pass, four passes in its opening step, and
    the ready tasks of the subprocesses past the first thousand or so not seen).

    A walk is skipped where it would find nothing to run (:func:`_may_run`, asked just
    before it): a step of a large cycle (one unit's report) walked each of the N units'
    subprocesses, and the whole tree, twice, to run the few tasks of the one unit."""
    subprocesses = workflow.subprocesses

    def update_workflow(wf) -> int:
        if not _may_run(wf, subprocesses):
            return 0
        count = 0
        for task in all_tasks(wf, state=TaskState.READY):
            if not task.task_spec.manual:
                task.run()
                count += 1
                if did_complete_task is not None:
                    did_complete_task(task)
        return count

    def one_pass() -> bool:
        if len(subprocesses) >= LARGE_STEP_SUBPROCESSES:
            large_step()
        active = workflow.get_active_subprocesses()
        for subprocess in sorted(active, key=lambda v: v.depth, reverse=True):
            while update_workflow(subprocess) > 0:
                pass
            if subprocess.parent_task_id is not None:
                task = workflow.get_task_from_id(subprocess.parent_task_id)
                task.task_spec._update(task)
        count = update_workflow(workflow)
        return count > 0 or len(workflow.get_active_subprocesses()) > len(active)

    while one_pass():
        pass
    workflow.refresh_timers()


# A step is large when its workflow runs this many subprocesses, or a multi-instance activity
# creates this many instances (a reporting cycle's units).
LARGE_STEP_SUBPROCESSES = 1000
# the oldest generation's threshold while a large step runs: never reached
_NO_FULL_COLLECTIONS = 1 << 30
_large_step: ContextVar[list | None] = ContextVar("nd73_large_step", default=None)


class _Held:
    """The large steps running (in any thread) and the thresholds before the first."""
    steps = 0
    thresholds: tuple[int, ...] = ()


_held = _Held()
_held_lock = threading.Lock()


@contextmanager
def step_scope():
    """A step (the runtime enters one around each unit of work, and around a start's
    engine steps and unit of work; one within another is part of it): if it turns out to be
    a large step (:func:`large_step`: it walks or runs a workflow with many subprocesses,
    or creates many instances), the cyclic garbage collector makes no full collection
    until it ends.

    A full collection walks every object the process holds, and one comes each time the
    objects that survived the younger collections grew by a quarter: the step opening a
    cycle for 5,000 units made five as the cycle grew (0.6 s, a tenth of the step), now
    two (one before the step is known to be large). Younger collections go on, so garbage
    cycles the step makes are still freed as they were; those that reach the oldest
    generation wait for the first full collection after the step (the threshold is put
    back when it ends, and the younger collections it counted stand, so that one comes
    soon after). A unit's report still meets about one full collection in two, at its
    start, before the walk that finds it large.

    Other threads: the thresholds are the process's. They are raised when the first of
    the large steps running in any thread is found large and put back as they were when
    the last one ends (a count under a lock), so one thread's step never puts them back
    under another's. Meanwhile the other threads' full collections wait as well; that only
    delays freeing garbage cycles (never frees a live object), by at most a large step's
    length."""
    if _large_step.get() is not None:       # within another: part of it
        yield
        return
    held = [False]
    token = _large_step.set(held)
    try:
        yield
    finally:
        _large_step.reset(token)
        if held[0]:
            with _held_lock:
                _held.steps -= 1
                if _held.steps == 0:
                    gc.set_threshold(*_held.thresholds)


def large_step() -> None:
    """The step in hand (a :func:`step_scope`) is large: no full collection until it ends.
    Outside a step scope, or said again, nothing."""
    held = _large_step.get()
    if held is None or held[0]:
        return
    held[0] = True
    with _held_lock:
        if _held.steps == 0:
            _held.thresholds = gc.get_threshold()
            young, middle = _held.thresholds[:2]
            gc.set_threshold(young, middle, _NO_FULL_COLLECTIONS)
        _held.steps += 1


def _without_debug_listings() -> None:
    """SpiffWorkflow takes its loggers' level NOTSET (0, the default) for debugging: each
    workflow it creates then lists all its tasks for a log record's extras (each of a
    cycle's N subprocesses, 2 s at 20,000 units), and each task change carries its data,
    whatever the handlers then drop. Its two loggers get the level they inherit now (the
    root's WARNING unless set otherwise), which emits the same records."""
    for name in ("spiff.workflow", "spiff.task"):
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logger.getEffectiveLevel())


_without_debug_listings()


_spiff_task_log = logging.getLogger("spiff.task")
# SpiffWorkflow's own, for a comparison with the library as it is shipped (bench)
SPIFF_SET_STATE = Task._set_state


def _set_state(self, value: int) -> None:
    """SpiffWorkflow's ``Task._set_state``, with its log record built only when the logger
    emits it: SpiffWorkflow names the state and gathers the record's extras at every change,
    also when its logger drops the record (a cycle's opening changes 180,000 states; the
    record cost more than the change)."""
    if value != self._state:
        now = wall_clock()
        elapsed = now - self.last_state_change
        self.last_state_change = now
        self._state = value
        if _spiff_task_log.isEnabledFor(logging.INFO):
            _spiff_task_log.info(f"State changed to {TaskState.get_name(value)}",
                                 extra=self.collect_log_extras({"elapsed": elapsed}))
    elif _spiff_task_log.isEnabledFor(logging.DEBUG):
        _spiff_task_log.debug(f"State set to {TaskState.get_name(value)}",
                              extra=self.collect_log_extras())


Task._set_state = _set_state
task_ids.install()
