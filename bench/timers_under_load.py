"""Figure 7, timers under HTTP load: figure 6 (N timers due within one minute, fired by
scheduler processes on PostgreSQL) while figure 2's HTTP benchmark (REST task completions
through ``nd73 serve``, gunicorn workers, concurrent clients) runs at the same time on the
same machine, each in its own database on the same server.

Both are prepared first (the timers' instances, the HTTP figure's open tasks, the server
started and ready); then the schedulers start, LEAD seconds before the first timer is due,
and the clients start hammering at once, for as long as the timers' window lasts (or until
their tasks run out: ``http_load_s`` says how long the HTTP load actually ran, and
``http_load_covered_window`` whether it covered the whole window). The figure is the timers'
delay (fired_at - due_at), with the HTTP side's own throughput and latency beside it.

Usage: python -m bench.timers_under_load [N] [--window 60] [--schedulers 2]
           [--http-n 3000] [--clients 32] [--workers 2] [--database ...]
"""
from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

from . import http_throughput, timers
from .common import bench_database, emit, postgres_available


def run(n: int = 10_000, window: float = 60.0, schedulers: int = 2, http_n: int = 3000,
        clients: int = 32, workers: int = 2, database: str = "postgresql",
        time_limit: float = 300.0) -> dict:
    if database == "sqlite":
        schedulers = 1                   # SQLite has one writer: one scheduler (README)
    with bench_database(database, "timers_load") as timers_url, \
            bench_database(database, "http_load") as http_url, \
            tempfile.TemporaryDirectory(prefix="nd73-bench-") as folder:
        started = time.perf_counter()
        timers.create(timers_url, n, window)
        task_ids = http_throughput.prepare(http_url, http_n)
        prepared_s = time.perf_counter() - started
        server, base = http_throughput.serve(http_url, workers, Path(folder) / "serve.log")
        http: dict = {}
        try:
            # the clients run through the lead and the window, the schedulers' busy time
            load_limit = timers.LEAD.total_seconds() + window
            hammer = threading.Thread(target=lambda: http.update(http_throughput.hammer(
                base, task_ids, clients, load_limit)))
            processes = timers.start_schedulers(timers_url, schedulers)
            hammer.start()
            result = timers.watch(timers_url, processes, window, time_limit)
            hammer.join()
        finally:
            server.terminate()
            server.wait(timeout=30)
    load_s = http.get("wall_s", 0.0)
    return emit("timers_under_http_load", database, n, window_s=window,
                schedulers=schedulers, prepared_s=round(prepared_s, 1), **result,
                http_load_s=load_s,
                http_load_covered_window=load_s >= timers.LEAD.total_seconds() + window - 1,
                http={"n": http_n, "clients": clients, "workers": workers,
                      **{k: http.get(k) for k in ("completions", "failures",
                                                   "completions_per_s", "latency_ms")}},
                target_p99_s=2.0)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int, nargs="?", default=10_000)
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--schedulers", type=int, default=2)
    parser.add_argument("--http-n", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--database", choices=("sqlite", "postgresql"),
                        default="postgresql" if postgres_available() else "sqlite")
    args = parser.parse_args(argv)
    run(args.n, args.window, args.schedulers, args.http_n, args.clients, args.workers,
        args.database)


if __name__ == "__main__":
    main()
