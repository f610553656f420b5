"""Demo data for ``make run``: every variant's organisation (``org.toml``) and, into an empty
database, the cases ``processes/demo.toml`` describes."""
from __future__ import annotations

import tomllib
from pathlib import Path

from sqlalchemy import func, select

from .store import Instance
from .variants import load_variant

DEMO_FILE = "demo.toml"


def seed_orgs(engine, processes_dir: Path, password: str | None = None) -> list[str]:
    """Every variant's organisation; the accounts' password is ``password``, else the
    engine's ``ND73_DEMO_PASSWORD`` setting."""
    password = password or engine.settings.demo_password.get_secret_value()
    lines = []
    for folder in sorted(Path(processes_dir).iterdir()):
        if (folder / "org.toml").exists():
            variant = load_variant(folder)
            units, users = engine.org.seed(variant.name, variant.org, password)
            lines.append(f"{variant.name}: {units} units, {users} users")
    return lines


def demo_data(processes_dir: Path) -> dict:
    """``demo.toml`` beside the variants: the sample plan and the demo cases."""
    return tomllib.loads((Path(processes_dir) / DEMO_FILE).read_text(encoding="utf-8"))


def demo_plan(processes_dir: Path, title: str | None = None) -> dict:
    plan = dict(demo_data(processes_dir)["plan"])
    return {**plan, "title": title} if title else plan


def seed(engine, processes_dir: Path) -> list[str]:
    lines = seed_orgs(engine, processes_dir)
    with engine.db.reading() as session:
        if session.scalar(select(func.count(Instance.id))):
            return lines + ["demo cases already present"]
    data = demo_data(processes_dir)
    runtime = engine.runtime
    for case in data.get("cases", []):
        # the officials of the seeded organisations themselves, their rights checked
        principal = engine.access.principal(case["by"])
        started = runtime.start(case["variant"], case["process"], principal=principal,
                                business_key=case.get("business_key"))
        for step in case.get("steps", []):
            task = runtime.open_tasks(started.id)[0]
            runtime.complete_task(task.id, data[step] if isinstance(step, str) else step,
                                  principal=principal)
        lines.append(case.get("says") or f"{case['process']} {started.business_key} started")
    return lines
