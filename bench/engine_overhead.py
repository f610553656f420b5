"""Engine overhead: a two-step approval (plan, head's decision, reminder timer, script),
N instances, through the engine (state in a database) and by bare SpiffWorkflow in memory,
in one run.

Prints one JSON object: CPU count, database, N, instances/s of each and the engine/bare ratio.
Usage: python -m bench.engine_overhead [N] (ND73_BENCH_DATABASE_URL picks the database).
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.spiff.parser.process import SpiffBpmnParser
from SpiffWorkflow.util.task import TaskState

from engine.clock import ManualClock
from engine.variants import SourceFile
from engine.workflow_engine import WorkflowEngine

APPROVAL = Path(__file__).resolve().parent / "approval.bpmn"
STEPS = ({"title": "Số hoá hồ sơ"}, {"decision": "approve"})


def bare(n: int) -> float:
    parser = SpiffBpmnParser()
    parser.add_bpmn_file(str(APPROVAL))
    spec, subprocess_specs = parser.get_spec("approval"), parser.get_subprocess_specs("approval")
    started = time.perf_counter()
    for _ in range(n):
        workflow = BpmnWorkflow(spec, subprocess_specs)
        workflow.do_engine_steps()
        for data in STEPS:
            [task] = workflow.get_tasks(state=TaskState.READY, manual=True)
            task.data.update(data)
            task.run()
            workflow.do_engine_steps()
        assert workflow.is_completed()
    return n / (time.perf_counter() - started)


def through_engine(n: int, url: str) -> float:
    engine = WorkflowEngine(url, clock=ManualClock())
    engine.upgrade_database()
    engine.repository.deploy("bench", [SourceFile("approval.bpmn", APPROVAL.read_bytes())],
                             "bench")
    runtime = engine.runtime
    started = time.perf_counter()
    for _ in range(n):
        instance = runtime.start("bench", "approval", started_by="bench")
        for data in STEPS:
            [task] = runtime.open_tasks(instance.id)
            runtime.complete_task(task.id, data, actor="bench")
    rate = n / (time.perf_counter() - started)
    assert runtime.get(instance.id).status == "completed"
    engine.close()
    return rate


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    with tempfile.TemporaryDirectory() as folder:
        url = os.environ.get("ND73_BENCH_DATABASE_URL", f"sqlite:///{folder}/bench.sqlite3")
        engine_rate = through_engine(n, url)
        bare_rate = bare(n)
    print(json.dumps({
        "figure": "engine_overhead_ratio", "cpus": os.cpu_count(),
        "database": url.split(":", 1)[0], "n": n,
        "engine_instances_per_s": round(engine_rate, 1),
        "bare_spiff_instances_per_s": round(bare_rate, 1),
        "ratio": round(engine_rate / bare_rate, 3),
    }))


if __name__ == "__main__":
    main()
