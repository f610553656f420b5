"""Run the benchmarks: ``python -m bench [figure ...] [options]`` prints one JSON object per
figure, one per line (``make bench`` runs them all with the defaults below).

Figures: overhead (1), http (2), history (3), fanout (4), state (5), timers (6),
timers_load (7: figure 6 while figure 2 runs).
PostgreSQL figures use the local server (ND73_BENCH_POSTGRES, default
postgresql+psycopg://postgres@127.0.0.1:5432/postgres), in databases the bench creates and
drops; without a server they run on SQLite where the figure allows it (it says which).
"""
from __future__ import annotations

import argparse
import sys

from . import (engine_overhead, fanout, history, http_throughput, state_size, timers,
               timers_under_load)
from .common import postgres_available

FIGURES = ("overhead", "http", "history", "fanout", "state", "timers", "timers_load")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("figures", nargs="*", metavar="figure",
                        help=f"figures to run, of {', '.join(FIGURES)} (default: all)")
    parser.add_argument("--overhead-n", type=int, default=500)
    parser.add_argument("--overhead-postgres-n", type=int, default=100,
                        help="N of figure 1 on PostgreSQL (slower per instance: round trips)")
    parser.add_argument("--overhead-databases", default="sqlite,postgresql")
    parser.add_argument("--http-n", type=int, default=2000)
    parser.add_argument("--http-clients", type=int, default=32)
    parser.add_argument("--http-time-limit", type=float, default=60.0)
    parser.add_argument("--history", type=int, default=100_000,
                        help="finished instances of figure 3's large database (issue: 1000000)")
    parser.add_argument("--history-open", type=int, default=10_000)
    parser.add_argument("--history-samples", type=int, default=200)
    parser.add_argument("--fanout-n", type=int, default=5000,
                        help="reporting units of figure 4")
    parser.add_argument("--state-n", type=int, default=20)
    parser.add_argument("--state-loops", type=int, default=50)
    parser.add_argument("--timers-n", type=int, default=10_000)
    parser.add_argument("--timers-window", type=float, default=60.0)
    parser.add_argument("--timers-schedulers", type=int, default=2)
    # enough open tasks for the HTTP load to cover the timers' window at about 150
    # completions/s (3,000 ran out after 26 s on a machine with no other work)
    parser.add_argument("--timers-load-http-n", type=int, default=9000,
                        help="open tasks the HTTP load of figure 7 completes (it stops "
                             "early when they run out: the figure says how long it ran)")
    parser.add_argument("--sqlite-only", action="store_true",
                        help="run every figure on SQLite (no PostgreSQL server needed)")
    args = parser.parse_args(argv)
    selected = args.figures or list(FIGURES)
    unknown = [f for f in selected if f not in FIGURES]
    if unknown:
        parser.error(f"unknown figure(s) {', '.join(unknown)}; choose from {', '.join(FIGURES)}")
    postgres = not args.sqlite_only and postgres_available()
    server = "postgresql" if postgres else "sqlite"
    if not postgres and not args.sqlite_only:
        print("PostgreSQL is not reachable: figures run on SQLite", file=sys.stderr)
    for figure in selected:
        if figure == "overhead":
            for database in args.overhead_databases.split(","):
                if database == "postgresql" and not postgres:
                    continue
                engine_overhead.run(args.overhead_n if database == "sqlite"
                                    else args.overhead_postgres_n, database)
        elif figure == "http":
            http_throughput.run(args.http_n, args.http_clients, 2, args.http_time_limit, server)
        elif figure == "history":
            history.run(args.history, args.history_open, args.history_samples, server)
        elif figure == "fanout":
            fanout.run(args.fanout_n, server)
        elif figure == "state":
            state_size.run(args.state_n, args.state_loops, server)
        elif figure == "timers":
            timers.run(args.timers_n, args.timers_window, args.timers_schedulers, server)
        elif figure == "timers_load":
            timers_under_load.run(args.timers_n, args.timers_window, args.timers_schedulers,
                                  args.timers_load_http_n, args.http_clients, 2, server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
