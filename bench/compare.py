"""Figures taken alternately with the code of another commit: ``python -m bench.compare BASE
[--pairs N] -- [figure ...] [options of python -m bench]``.

A change's speed is measured against the code before it on the same machine in the same
hour, run for run, because this kind of machine's speed drifts by a fifth over minutes: the
two codes take turns (the order swapped every other pair, so a drift does not land on one
side only). BASE (any commit, tag or branch) is checked out in a temporary git worktree and
run with this checkout's Python, installed packages and built web assets (linked into the
worktree; a BASE with other dependencies needs them installed: the command says when
``pyproject.toml`` differs). Each run imports its own tree's code first (``PYTHONPATH``),
also in the servers and schedulers a figure starts.

Prints, for each figure and database, one JSON line: every number of the figure's own line
(nested ones by dotted names, ``--keys`` to choose), with BASE's and this checkout's values
run by run and their medians.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from .common import PROJECT

# what describes a run rather than measures the code
_CONTEXT = {"figure", "database", "cpus", "n", "load_average_1m"}
# what a checkout builds and git does not hold, which a figure may use (the HTTP figure starts
# the server as .venv/bin/nd73): linked into the base's worktree
_BUILT = (".venv", "api/static/vendor")


def _git(*args: str, cwd: Path = PROJECT) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def numbers(record: dict, prefix: str = "") -> dict[str, float]:
    """The numbers of a figure's JSON line by dotted name (lists and texts left out)."""
    found: dict[str, float] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, bool) or (not prefix and key in _CONTEXT):
            continue
        if isinstance(value, (int, float)):
            found[name] = value
        elif isinstance(value, dict):
            found.update(numbers(value, f"{name}."))
    return found


def run_figures(tree: Path, arguments: list[str]) -> list[dict]:
    """The JSON lines ``python -m bench arguments`` prints when run in ``tree``."""
    # the installed package is editable, found after PYTHONPATH: every process of the run,
    # servers included, imports the tree's own code
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run([sys.executable, "-m", "bench", *arguments], cwd=tree, env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"python -m bench {' '.join(arguments)} failed in {tree}:\n"
                         f"{done.stderr.strip()[-2000:]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def summary(base_runs: list[list[dict]], head_runs: list[list[dict]],
            keys: set[str] | None, base: str) -> list[dict]:
    """One record per figure and database: its numbers run by run on both sides."""
    summaries: dict[tuple, dict] = {}
    for side, runs in (("base", base_runs), ("head", head_runs)):
        for run in runs:
            for record in run:
                where = (record["figure"], record["database"])
                entry = summaries.setdefault(where, {
                    "figure": record["figure"], "database": record["database"],
                    "n": record["n"], "base": base, "load_average_1m": {"base": [], "head": []},
                    "values": {}})
                entry["load_average_1m"][side].append(record["load_average_1m"])
                for name, value in numbers(record).items():
                    if keys is None or name in keys:
                        entry["values"].setdefault(name, {"base": [], "head": []})[side] \
                            .append(value)
    for entry in summaries.values():
        for value in entry["values"].values():
            for side in ("base", "head"):
                if value[side]:
                    value[f"median_{side}"] = round(statistics.median(value[side]), 4)
    return list(summaries.values())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compare",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("base", help="the commit (tag, branch) to take turns with")
    parser.add_argument("--pairs", type=int, default=3, help="runs of each code (default 3)")
    parser.add_argument("--keys", help="comma-separated dotted names of the numbers to "
                                       "print (default: all of each figure's)")
    argv = list(sys.argv[1:] if argv is None else argv)
    # after --: the figures and options of python -m bench
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    bench_args = argv[split + 1:]
    if args.pairs < 1:
        parser.error("--pairs must be at least 1")
    commit = _git("rev-parse", "--verify", f"{args.base}^{{commit}}")
    if _git("show", f"{commit}:pyproject.toml") != (PROJECT / "pyproject.toml").read_text() \
            .strip():
        print(f"pyproject.toml differs at {commit[:12]}: its code runs with this checkout's "
              "packages", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="nd73-compare-") as folder:
        tree = Path(folder) / "base"
        _git("worktree", "add", "--detach", str(tree), commit)
        try:
            for name in _BUILT:
                if (PROJECT / name).exists() and not (tree / name).exists():
                    (tree / name).symlink_to(PROJECT / name)
            base_runs, head_runs = [], []
            for pair in range(args.pairs):
                order = [(tree, base_runs), (PROJECT, head_runs)]
                for where, runs in order if pair % 2 == 0 else reversed(order):
                    runs.append(run_figures(where, bench_args))
        finally:
            _git("worktree", "remove", "--force", str(tree))
    keys = set(args.keys.split(",")) if args.keys else None
    for entry in summary(base_runs, head_runs, keys, commit[:12]):
        print(json.dumps(entry, ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
