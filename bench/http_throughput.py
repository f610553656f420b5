"""Figure 2, HTTP throughput and latency: task completions through the REST API served by
``nd73 serve`` (gunicorn, ND73_WORKERS workers) on loopback, by C concurrent clients, each
a thread with its own kept-alive connection completing distinct tasks one after another
(a closed loop: by Little's law the mean latency is C / throughput); bounded by N
completions and a time limit.

The open tasks are prepared through the engine first: N national proposals waiting for
their plan (submit_plan, the proposer's form), each completion then runs the real step
(form check, scripts, screening task and its candidates, notifications, audit).

Statements and round trips per REST completion are counted afterwards on a few more tasks,
completed through the same app in this process (Flask's test client, the same request
handling as under gunicorn: token, rights, the step), with SQLAlchemy's event hooks; a few
more are then timed part by part (``request_breakdown``: the step, authentication, schemas,
JSON, session, hooks and Flask itself, in CPU milliseconds, bench.request_profile).

CPU per completion during the run, from /proc: the gunicorn workers' (``worker_cpu_ms``;
each worker's share of it, ``worker_cpu_shares``), the PostgreSQL backends' of the bench's
database (``postgres_cpu_ms``, approximate, see ``_backends_cpu``), the clients'
(``client_cpu_ms``, this process), and their sum (``cpu_ms_per_completion``), which bounds
the throughput on this machine's cores (``cpu_bound_completions_per_s``).

Usage: python -m bench.http_throughput [N] [--clients 32] [--workers 2] [--time-limit 60]
                                       [--database postgresql|sqlite]
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import queue
import re
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import requests
from sqlalchemy.engine import make_url

from engine.org import DEFAULT_DEMO_PASSWORD

from .common import (PROJECT, PROPOSER, RoundTrips, bench_database, emit, library_engine,
                     percentiles, postgres_available, step_data)

ND73 = Path(PROJECT) / ".venv" / "bin" / "nd73"
COUNTED = 5           # REST completions whose statements are counted
PROFILED = 20         # and then timed part by part (bench.request_profile)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare(url: str, n: int) -> list[str]:
    """N open submit_plan tasks, through the engine."""
    engine = library_engine(url)
    try:
        ids = []
        proposer = engine.access.principal(PROPOSER)
        for _ in range(n):
            instance = engine.runtime.start("national", "proposal", principal=proposer)
            [task] = engine.runtime.open_tasks(instance.id)
            ids.append(task.id)
        return ids
    finally:
        engine.close()


_WORKER_READY = re.compile(r'"message": "worker \d+ ready"')


def _workers_ready(log: Path) -> int:
    """How many of the server's workers have logged that they take requests."""
    return len(_WORKER_READY.findall(log.read_text(errors="replace")))


def serve(url: str, workers: int, log: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {**os.environ, "ND73_DATABASE_URL": url, "ND73_PORT": str(port),
           "ND73_HOST": "127.0.0.1", "ND73_WORKERS": str(workers),
           "ND73_SECRET_KEY": "bench-secret-key-" + "x" * 32}
    env.pop("ND73_EMBEDDED_SCHEDULER", None)
    env.pop("ND73_TEST_CLOCK", None)
    with open(log, "w") as out:
        server = subprocess.Popen([str(ND73), "serve"], env=env, cwd=PROJECT, stdout=out,
                                  stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):                        # workers import the app, then listen
        if server.poll() is not None:
            raise RuntimeError(f"nd73 serve stopped: {log.read_text()[-2000:]}")
        # every worker loaded (its "worker ... ready" line): a kept-alive connection stays
        # with the worker that accepted it, so clients connecting while one worker is still
        # loading would all be served by the other
        if _workers_ready(log) >= workers:
            try:
                if requests.get(f"{base}/readyz", timeout=2).status_code == 200:
                    return server, base
            except requests.RequestException:
                pass
        time.sleep(0.2)
    server.terminate()
    raise RuntimeError("nd73 serve never became ready")


def hammer(base: str, task_ids: list[str], clients: int, time_limit: float) -> dict:
    token = requests.post(f"{base}/api/v1/auth/token", timeout=10, json={
        "username": PROPOSER, "password": os.environ.get("ND73_DEMO_PASSWORD",
                                                         DEFAULT_DEMO_PASSWORD)}
    ).json()["access_token"]
    work: queue.Queue = queue.Queue()
    for task_id in task_ids:
        work.put(task_id)
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    body = json.dumps({"data": step_data("submit_plan")}).encode()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    address = urlsplit(base)
    stop_at = time.monotonic() + time_limit

    def client() -> None:
        # one kept-alive connection per client, as a browser or an integration keeps it: a
        # new connection per request cost the client 1.3-1.7 ms of CPU per completion (0.4
        # kept alive), taken from the cores the server is measured on
        connection = None
        while time.monotonic() < stop_at:
            try:
                task_id = work.get_nowait()
            except queue.Empty:
                break
            started = time.perf_counter()
            try:
                if connection is None:
                    connection = http.client.HTTPConnection(address.hostname, address.port,
                                                            timeout=30)
                connection.request("POST", f"/api/v1/tasks/{task_id}/complete", body=body,
                                   headers=headers)
                response = connection.getresponse()
                text = response.read()
                ok = response.status == 200
                reason = f"{response.status} {text[:200]!r}"
                if response.will_close:
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException) as exc:
                ok, reason = False, repr(exc)
                if connection is not None:
                    connection.close()
                connection = None
            elapsed = time.perf_counter() - started
            with lock:
                (latencies.append(elapsed) if ok else failures.append(reason))
        if connection is not None:
            connection.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    cpu_before = time.process_time()
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    client_cpu = time.process_time() - cpu_before
    return {"completions": len(latencies), "failures": len(failures),
            "first_failures": failures[:3], "wall_s": round(wall, 2),
            "completions_per_s": round(len(latencies) / wall, 1),
            "latency_ms": percentiles(latencies) if latencies else None,
            # Little's law for C clients in a closed loop: the mean latency the throughput
            # implies (ramp-up and the last stragglers make the measured mean a little lower)
            "littles_law_mean_ms": round(clients * wall * 1000 / max(len(latencies), 1), 2),
            "client_cpu_ms": round(client_cpu * 1000 / max(len(latencies), 1), 2)}


def _cpu_of(pid: str) -> float:
    """CPU seconds (user and system) used so far by process ``pid`` (/proc/<pid>/stat);
    0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def _workers_cpu(pid: int) -> dict[str, float]:
    """CPU seconds used so far by each of ``pid``'s children (gunicorn's workers), by pid;
    nothing where there is no /proc."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return {}
    return {child: _cpu_of(child) for child in children}


def _backends_cpu(database: str) -> dict[str, float]:
    """CPU seconds used so far by each PostgreSQL backend serving ``database`` on this
    machine, by pid: the processes whose title names the database ("postgres: ... <user>
    <database> <client> ..."). Approximate: a backend that ends between two readings loses
    what it used since the first, and the server's own processes (WAL writer, checkpointer,
    autovacuum) are not counted; nothing where the server is not local or /proc is not
    readable."""
    found = {}
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace")
        except OSError:
            continue
        if title.startswith("postgres:") and f" {database} " in title:
            found[entry.name] = _cpu_of(entry.name)
    return found


def _used_since(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds each process (by pid) used between two readings (all of it for one that
    started between them)."""
    return {pid: cpu - before.get(pid, 0.0) for pid, cpu in after.items()}


class CpuMeter:
    """CPU per completion of the gunicorn workers and of the database's backends, read
    from /proc before and after the run."""

    def __init__(self, server_pid: int, url: str):
        self.server_pid = server_pid
        parsed = make_url(url)
        self.database = parsed.database if parsed.get_backend_name() == "postgresql" else None
        self.workers = _workers_cpu(server_pid)
        self.backends = _backends_cpu(self.database) if self.database else {}

    def per_completion(self, completions: int) -> dict:
        per = max(completions, 1)
        used = _used_since(self.workers, _workers_cpu(self.server_pid))
        total = sum(used.values())
        result = {"worker_cpu_ms": round(total * 1000 / per, 2),
                  # each worker's share of that CPU, largest first: the clients' kept-alive
                  # connections stay with the worker that accepted them, which may not
                  # share them evenly (a worker at its core's limit bounds the run)
                  "worker_cpu_shares": sorted((round(cpu / total, 3) for cpu in used.values()),
                                              reverse=True) if total > 0 else []}
        if self.database:
            backends = _used_since(self.backends, _backends_cpu(self.database))
            result["postgres_cpu_ms"] = round(sum(backends.values()) * 1000 / per, 2)
        return result


def count_statements(url: str, task_ids: list[str], profiled_ids: list[str] = ()) -> dict:
    """Statements and round trips per REST completion of ``task_ids``, through the app in
    this process, and the breakdown of the completions of ``profiled_ids``."""
    from api.app import create_app
    from engine.workflow_engine import WorkflowEngine

    from .request_profile import breakdown, profiled

    engine = WorkflowEngine(url)
    try:
        client = create_app(engine, SECRET_KEY="bench-secret-key-" + "x" * 32).test_client()
        token = client.post("/api/v1/auth/token", json={
            "username": PROPOSER, "password": os.environ.get(
                "ND73_DEMO_PASSWORD", DEFAULT_DEMO_PASSWORD)}).get_json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        body = {"data": step_data("submit_plan")}
        client.post(f"/api/v1/tasks/{task_ids[0]}/complete", json=body, headers=headers)
        counter = RoundTrips(engine.db.engine)      # the first one warmed the caches
        with counter.counted():
            for task_id in task_ids[1:]:
                response = client.post(f"/api/v1/tasks/{task_id}/complete", json=body,
                                       headers=headers)
                if response.status_code != 200:
                    raise RuntimeError(f"a counted completion failed: {response.status_code}"
                                       f" {response.get_data(as_text=True)[:200]}")
        counter.remove()
        counted = counter.per(len(task_ids) - 1)
        if not profiled_ids:
            return counted, None
        with profiled(client.application) as parts:
            for task_id in profiled_ids:
                response = client.post(f"/api/v1/tasks/{task_id}/complete", json=body,
                                       headers=headers)
                if response.status_code != 200:
                    raise RuntimeError(f"a timed completion failed: {response.status_code}")
        return counted, breakdown(parts, len(profiled_ids))
    finally:
        engine.close()


def run(n: int = 2000, clients: int = 32, workers: int = 2, time_limit: float = 60.0,
        database: str = "postgresql") -> dict:
    with bench_database(database, "http") as url, \
            tempfile.TemporaryDirectory(prefix="nd73-bench-") as folder:
        started = time.perf_counter()
        profiled_n = min(PROFILED, max(2, n // 4))
        task_ids = prepare(url, n + COUNTED + profiled_n)
        prepared_s = time.perf_counter() - started
        server, base = serve(url, workers, Path(folder) / "serve.log")
        try:
            meter = CpuMeter(server.pid, url)
            result = hammer(base, task_ids[COUNTED + profiled_n:], clients, time_limit)
            result.update(meter.per_completion(result["completions"]))
        finally:
            server.terminate()
            server.wait(timeout=30)
        # what the machine spends per completion, the clients' included: on C cores the
        # completions per second cannot exceed C * 1000 / cpu_ms_per_completion
        result["cpu_ms_per_completion"] = round(sum(
            result.get(name, 0.0) for name in ("worker_cpu_ms", "postgres_cpu_ms",
                                               "client_cpu_ms")), 2)
        result["cpu_bound_completions_per_s"] = round(
            (os.cpu_count() or 1) * 1000 / max(result["cpu_ms_per_completion"], 0.01), 1)
        result["per_rest_completion"], result["request_breakdown"] = count_statements(
            url, task_ids[:COUNTED], task_ids[COUNTED:COUNTED + profiled_n])
    return emit("http_task_completions", database, n, clients=clients, workers=workers,
                time_limit_s=time_limit, prepared_s=round(prepared_s, 1), **result,
                target_completions_per_s=200, target_p95_ms=100)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int, nargs="?", default=2000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--time-limit", type=float, default=60.0)
    parser.add_argument("--database", choices=("sqlite", "postgresql"),
                        default="postgresql" if postgres_available() else "sqlite")
    args = parser.parse_args(argv)
    run(args.n, args.clients, args.workers, args.time_limit, args.database)


if __name__ == "__main__":
    main()
