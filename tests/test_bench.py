"""Smoke test of the benchmarks (bench/): every figure runs with a tiny N so none can rot.
Speed is not asserted, only that each prints its JSON figure with positive numbers. Figures
meant for PostgreSQL run there when the suite runs on PostgreSQL (in databases the bench
creates and drops on that server), otherwise on SQLite."""
from __future__ import annotations

import json

import pytest
from sqlalchemy.engine import make_url

from bench import (engine_overhead, fanout, history, http_throughput, state_size, timers,
                   timers_under_load)


@pytest.fixture
def server_kind(database_url, monkeypatch) -> str:
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        monkeypatch.setenv("ND73_BENCH_POSTGRES", url.set(database="postgres")
                           .render_as_string(hide_password=False))
        return "postgresql"
    return "sqlite"


def _check(record: dict, figure: str, database: str, capsys) -> None:
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(line) == record
    assert record["figure"] == figure
    assert record["database"] == database
    assert record["cpus"] >= 1 and record["n"] >= 1


def test_engine_overhead(server_kind, capsys):
    record = engine_overhead.run(2, server_kind)
    _check(record, "engine_overhead_ratio", server_kind, capsys)
    assert record["steps_per_instance"] >= 10
    assert record["engine_instances_per_s"] > 0 and record["bare_spiff_instances_per_s"] > 0
    assert record["ratio"] > 0
    assert 0 < record["ratio_ceiling_with_whole_state_writes"] < 1.5
    # where an instance's time goes: SpiffWorkflow's steps and the engine's own parts
    parts = record["engine_ms_per_instance_by_part"]
    assert {"advance (SpiffWorkflow's engine steps)", "state (serialized and delta)",
            "documents", "notifications", "lock", "who may act", "form checks",
            "commit (the last flush and the database's commit)"} <= set(parts)
    assert all(parts[k] > 0 for k in parts if k not in ("other", "garbage collection"))
    assert sum(v for k, v in parts.items() if k not in ("total", "garbage collection")) \
        == pytest.approx(parts["total"], abs=0.1)
    # a completion reads and writes the instance, its tasks and its audit: several statements
    counted = record["per_completion"]
    assert 5 <= counted["statements"] <= counted["round_trips"] < 60


def test_http_throughput(server_kind, capsys):
    record = http_throughput.run(8, clients=4, workers=2, time_limit=60, database=server_kind)
    _check(record, "http_task_completions", server_kind, capsys)
    assert record["completions"] == 8 and record["failures"] == 0
    assert record["completions_per_s"] > 0 and record["latency_ms"]["p95"] > 0
    counted = record["per_rest_completion"]
    assert 5 <= counted["statements"] <= counted["round_trips"] < 60
    # where a completion's CPU goes: the step inside the request, the parts outside it
    parts = record["request_breakdown"]
    assert parts["requests"] >= 2
    assert 0 < parts["step_cpu_ms"] < parts["request_cpu_ms"]
    assert parts["outside_step_cpu_ms"] > 0
    assert {"auth", "auth.principal_query", "schemas.load", "schemas.dump",
            "json.dumps"} <= set(parts["parts_cpu_ms"])
    # the CPU a completion costs the machine: the workers', the database's (on PostgreSQL,
    # its backends on this machine), the clients'; their sum bounds the throughput
    assert record["worker_cpu_ms"] > 0 and record["client_cpu_ms"] > 0
    # each of the two workers' share of theirs, largest first
    shares = record["worker_cpu_shares"]
    assert len(shares) == 2 and shares == sorted(shares, reverse=True)
    assert sum(shares) == pytest.approx(1, abs=0.002)
    assert ("postgres_cpu_ms" in record) == (server_kind == "postgresql")
    assert record.get("postgres_cpu_ms", 0) >= 0
    assert record["cpu_ms_per_completion"] == pytest.approx(
        record["worker_cpu_ms"] + record.get("postgres_cpu_ms", 0) + record["client_cpu_ms"],
        abs=0.02)
    assert record["cpu_bound_completions_per_s"] == pytest.approx(
        record["cpus"] * 1000 / record["cpu_ms_per_completion"], rel=0.01)
    # 4 clients in a closed loop: mean latency = clients / throughput (Little's law)
    # (the record's wall time is rounded to 10 ms)
    assert record["littles_law_mean_ms"] == pytest.approx(
        4 * 1000 * record["wall_s"] / record["completions"],
        abs=4 * 1000 * 0.005 / record["completions"] + 0.01)


def test_flat_cost_with_history(server_kind, capsys):
    record = history.run(history=60, open_tasks=40, samples=3, database=server_kind, small=20)
    _check(record, "flat_cost_with_history", server_kind, capsys)
    for size in ("small", "large"):
        assert record[size]["inbox_total"] > 0
        for name in ("inbox_ms", "search_ms", "admin_search_ms", "complete_ms"):
            assert record[size][name]["p95"] > 0
    assert record["large"]["history"] == 60 and record["inbox_p95_ratio"] > 0


def test_reporting_cycle_fanout(server_kind, capsys):
    record = fanout.run(15, server_kind)
    _check(record, "reporting_cycle_fanout", server_kind, capsys)
    assert record["unit_heads_with_task"] == 15 and record["report_tasks"] >= 15
    assert record["all_visible_s"] > 0 and record["collection_after_open_s"] >= 0
    assert record["one_report_s"] > 0 and len(record["reports_s"]) == fanout.REPORTS
    assert 0 < record["one_report_cpu_s"] and 0 < record["open_cycle_cpu_s"]
    # per unit: the opening's figures over N, to three decimals of a millisecond
    assert record["open_cycle_ms_per_unit"] == pytest.approx(
        record["open_cycle_s"] * 1000 / 15, abs=0.5)
    assert record["open_cycle_cpu_ms_per_unit"] == pytest.approx(
        record["open_cycle_cpu_s"] * 1000 / 15, abs=0.5)
    assert 0 < record["open_cycle_cpu_ms_per_unit"]


def test_state_size(server_kind, capsys):
    record = state_size.run(1, loops=2, database=server_kind)
    _check(record, "state_size", server_kind, capsys)
    for part in ("state", "projections", "audit", "total"):
        assert record["bytes_per_instance_ordinary_path"][part] > 0
    assert record["audit_growth_per_loop_bytes"] > 0


def test_timer_precision(server_kind, capsys):
    record = timers.run(12, window=2, schedulers=1, database=server_kind, time_limit=60)
    _check(record, "timer_precision", server_kind, capsys)
    assert record["fired"] == 12 and record["not_fired"] == 0
    assert record["delay_s"]["p99"] >= 0


def test_timers_under_http_load(server_kind, capsys):
    record = timers_under_load.run(12, window=2, schedulers=1, http_n=6, clients=2,
                                   database=server_kind, time_limit=60)
    _check(record, "timers_under_http_load", server_kind, capsys)
    assert record["fired"] == 12 and record["not_fired"] == 0
    assert record["delay_s"]["p99"] >= 0
    http = record["http"]
    assert http["completions"] + http["failures"] > 0 and http["failures"] == 0
    assert record["http_load_s"] > 0


def test_runner_prints_one_line_per_figure(capsys):
    from bench.__main__ import main
    assert main(["state", "--sqlite-only", "--state-n", "1", "--state-loops", "1"]) == 0
    [line] = capsys.readouterr().out.strip().splitlines()
    assert json.loads(line)["figure"] == "state_size"
    with pytest.raises(SystemExit):
        main(["no-such-figure"])


def test_the_cpu_of_a_local_database_s_backends_is_read(database_url):
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql" or url.host not in ("127.0.0.1", "localhost"):
        pytest.skip("the backends' CPU is read from /proc on PostgreSQL on this machine")
    from sqlalchemy import create_engine, text
    probe = create_engine(url)
    try:
        with probe.connect() as connection:
            pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
            connection.execute(text("SELECT count(*) FROM generate_series(1, 3000000)"))
            backends = http_throughput._backends_cpu(url.database)
            assert backends[str(pid)] > 0
    finally:
        probe.dispose()
    assert str(pid) not in http_throughput._backends_cpu(url.database + "_other")


def test_figures_are_taken_alternately_with_another_commit(capsys):
    """``python -m bench.compare``: the figure runs with the code of a commit (a temporary
    worktree, removed afterwards) and with this checkout's, in turns, and prints both
    sides' numbers run by run."""
    import subprocess

    from bench import compare
    from bench.common import PROJECT

    def worktrees() -> str:
        return subprocess.run(["git", "worktree", "list"], cwd=PROJECT, capture_output=True,
                              text=True, check=True).stdout
    before = worktrees()
    assert compare.main(["HEAD", "--pairs", "2", "--keys", "ratio,per_completion.statements",
                         "--", "overhead", "--overhead-n", "1",
                         "--overhead-databases", "sqlite"]) == 0
    [line] = capsys.readouterr().out.strip().splitlines()
    record = json.loads(line)
    assert (record["figure"], record["database"], record["n"]) == (
        "engine_overhead_ratio", "sqlite", 1)
    assert set(record["values"]) == {"ratio", "per_completion.statements"}
    for value in record["values"].values():
        assert len(value["base"]) == len(value["head"]) == 2
        assert value["median_base"] > 0 and value["median_head"] > 0
    # the same commit's code on both sides: the statements of a completion are the same
    statements = record["values"]["per_completion.statements"]
    assert statements["base"] == statements["head"]
    assert worktrees() == before
    with pytest.raises(SystemExit, match="no-such-commit"):
        compare.main(["no-such-commit", "--", "state"])


def test_the_numbers_of_a_figure_are_named_by_their_path():
    from bench.compare import numbers
    record = {"figure": "f", "database": "sqlite", "n": 3, "cpus": 2, "load_average_1m": 1.0,
              "rate": 2.5, "ok": True, "label": "x", "latency_ms": {"p95": 9, "p99": 12},
              "pairs": [1, 2]}
    assert numbers(record) == {"rate": 2.5, "latency_ms.p95": 9, "latency_ms.p99": 12}


def test_the_parts_timed_are_put_back_as_they_were(tmp_path):
    """Figure 1's breakdown times the engine's methods only while it measures: afterwards
    the runtime, its listeners and the modules call their own functions again."""
    import engine.runtime.instances as instances_module
    from bench.common import library_engine
    from bench.engine_overhead import through_engine
    from bench.step_parts import parts_timed
    from engine.store import appends
    library = library_engine(f"sqlite:///{tmp_path}/parts.sqlite3")
    try:
        lock, write = instances_module.lock_instance, appends.write
        with parts_timed(library) as spent:
            through_engine(library, 1)
        assert spent["advance (SpiffWorkflow's engine steps)"] > 0 and spent["documents"] > 0
        assert spent["commit (the last flush and the database's commit)"] > 0
        assert (instances_module.lock_instance, appends.write) == (lock, write)
        runtime = library.runtime
        assert not {"_advance", "_state_writer", "_check_form", "_load", "task_data",
                    "open_tasks"} & set(vars(runtime))
        assert all("step_saving" not in vars(listener) for listener in runtime.listeners)
        before = dict(spent)
        through_engine(library, 1)                    # not timed any more
        assert spent == before
    finally:
        library.close()


def test_the_bare_side_of_figure_1_runs_spiff_workflow_as_shipped():
    """The engine's ``Task._set_state`` (log records built only when emitted) and task ids
    (engine.task_ids) are not lent to the bare side: it runs SpiffWorkflow's own, and the
    engine's are back afterwards."""
    import uuid

    import SpiffWorkflow.task as spiff_task
    from SpiffWorkflow.task import Task

    from engine.multi_instance import SPIFF_SET_STATE
    from engine.task_ids import new_task_id
    ours = Task._set_state
    assert ours is not SPIFF_SET_STATE and spiff_task.uuid4 is new_task_id
    with engine_overhead.spiff_as_shipped():
        assert Task._set_state is SPIFF_SET_STATE and spiff_task.uuid4 is uuid.uuid4
    assert Task._set_state is ours and spiff_task.uuid4 is new_task_id
