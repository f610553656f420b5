"""Figure 1, engine overhead: the national proposal driven along its ordinary approval path
(plan, screening not complex, party opinion, leadership vote, decision approve,
implementation, evaluation, notification of the result, recognition), N instances, through
the engine (state, projections, audit and notifications in a database) and by bare
SpiffWorkflow in memory, in one run.

The bare side runs the same deployed BPMN (the same spec objects) with the same script
engine and sandbox functions, so the ratio measures what persistence, projections, audit and
notifications cost, not scripting. A third run is bare SpiffWorkflow that also serializes
its state after every step, as a durable engine must, but writes nothing: the ceiling of
any engine that stores whole states, whatever its database. The three take turns, in
rounds of N/5 instances each.

Usage: python -m bench.engine_overhead [N] [--database sqlite|postgresql]
"""
from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.task import Task
from SpiffWorkflow.util.task import TaskState

from engine.deadlines import variant_settings
from engine.multi_instance import SPIFF_SET_STATE
from engine.task_ids import spiff_uuid4

from .common import (PROPOSER, RoundTrips, bench_database, drive_proposal, emit,
                     library_engine, step_data)
from .step_parts import by_part

ROUNDS = 5


@contextmanager
def spiff_as_shipped() -> Iterator[None]:
    """SpiffWorkflow as it is shipped: the engine gives ``Task`` a ``_set_state`` that builds
    its log record only when the record is emitted (engine.multi_instance) and ids that keep
    their text (engine.task_ids); the bare side runs the library's own."""
    ours, Task._set_state = Task._set_state, SPIFF_SET_STATE
    try:
        with spiff_uuid4():
            yield
    finally:
        Task._set_state = ours


def bare(engine, n: int, serialize: bool = False) -> float:
    """Seconds to run the same process n times in memory: no database at all while it runs
    (with ``serialize``, the state is serialized after every step and thrown away)."""
    definition = engine.repository.latest("national", "proposal")
    spec, subprocess_specs = engine.repository.specs(definition)
    unit = engine.org.units_of(PROPOSER)[0]
    started = time.perf_counter()
    with variant_settings(engine.repository.settings(definition)), spiff_as_shipped():
        for _ in range(n):
            workflow = BpmnWorkflow(spec, subprocess_specs, script_engine=engine.script_engine)
            workflow.data.update({"started_by": PROPOSER})
            start = workflow.get_tasks(state=TaskState.READY)[0]
            start.data.update({"started_by": PROPOSER, "proposer": PROPOSER,
                               "proposer_unit": unit, "business_key": None})
            workflow.refresh_timers()
            workflow.do_engine_steps()
            if serialize:
                engine.codec.dump_state(workflow)
            while not workflow.is_completed():
                ready = workflow.get_tasks(state=TaskState.READY, manual=True)
                if not ready:
                    raise RuntimeError("the bare workflow stopped without a ready task")
                for task in ready:
                    task.data.update(step_data(task.task_spec.bpmn_id, task.data))
                    task.run()
                    workflow.refresh_timers()
                    workflow.do_engine_steps()
                    if serialize:
                        engine.codec.dump_state(workflow)
    return time.perf_counter() - started


def through_engine(engine, n: int, counter: RoundTrips | None = None) -> tuple[float, int]:
    """Seconds to run the process n times through the engine, and steps per instance
    (with ``counter``, the completions' statements counted)."""
    runtime = engine.runtime
    proposer = engine.access.principal(PROPOSER)
    steps = 0
    started = time.perf_counter()
    for _ in range(n):
        instance = runtime.start("national", "proposal", principal=proposer)
        steps += drive_proposal(engine, instance.id, candidates=False, counter=counter)
    elapsed = time.perf_counter() - started
    final = runtime.get(instance.id)
    assert (final.status, final.stage) == ("completed", "recognised"), final.status
    return elapsed, steps // n


def run(n: int = 500, database: str = "sqlite", rounds: int = ROUNDS) -> dict:
    # The three runs take turns in rounds: a shared machine's speed drifts over minutes,
    # and a drift would otherwise land on one side of the ratio only.
    rounds = max(1, min(rounds, n))
    sizes = [n // rounds + (1 if r < n % rounds else 0) for r in range(rounds)]
    engine_s = bare_s = serialized_s = 0.0
    with bench_database(database, "overhead") as url:
        engine = library_engine(url)
        try:
            through_engine(engine, min(n, 3))           # warm caches, like a running server
            # statements per completion, from one more instance outside the timed runs
            counter = RoundTrips(engine.db.engine)
            writes = engine.runtime.state_writes
            before = dict(writes)
            _, counted_steps = through_engine(engine, 1, counter)
            counter.remove()
            state_writes = {k: writes[k] - before[k] for k in writes}
            for size in sizes:
                # each run starts with nothing left for the collector (a full pass, not
                # timed): the three share one process and heap, and a full pass the
                # garbage of one run brought about fell in another's time (one pass, 75 to
                # 180 ms with the engine's workflows kept in memory, moved bare
                # SpiffWorkflow's rate by a quarter)
                gc.collect()
                elapsed, steps = through_engine(engine, size)
                engine_s += elapsed
                gc.collect()
                bare_s += bare(engine, size)
                gc.collect()
                serialized_s += bare(engine, size, serialize=True)
            # where an instance's time goes, on more instances outside the timed runs
            parts = by_part(engine, lambda k: through_engine(engine, k), min(n, 10))
        finally:
            engine.close()
    engine_rate, bare_rate, serialized_rate = n / engine_s, n / bare_s, n / serialized_s
    return emit("engine_overhead_ratio", database, n, process="national/proposal",
                steps_per_instance=steps, rounds=rounds,
                engine_instances_per_s=round(engine_rate, 2),
                bare_spiff_instances_per_s=round(bare_rate, 2),
                ratio=round(engine_rate / bare_rate, 3), target_ratio=0.5,
                engine_ms_per_instance=round(1000 / engine_rate, 2),
                bare_spiff_ms_per_instance=round(1000 / bare_rate, 2),
                engine_ms_per_instance_by_part=parts,
                per_completion=counter.per(counted_steps),
                state_bytes_written_per_step=round(
                    state_writes["bytes"] / (state_writes["snapshots"] + state_writes["deltas"])),
                state_snapshots_and_deltas=[state_writes["snapshots"], state_writes["deltas"]],
                # parts of the state its saves serialized, and all their parts (the rest frozen)
                state_parts_serialized_and_all=[
                    state_writes["parts_serialized"], state_writes["parts"]],
                bare_spiff_serializing_state_instances_per_s=round(serialized_rate, 2),
                ratio_ceiling_with_whole_state_writes=round(serialized_rate / bare_rate, 3))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int, nargs="?", default=500)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args(argv)
    run(args.n, args.database)


if __name__ == "__main__":
    main()
