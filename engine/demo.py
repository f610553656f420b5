"""Demo data for ``make run``: a few proposals at different steps, only into an empty database."""
from __future__ import annotations

from sqlalchemy import func, select

from .store import Instance


def seed(engine) -> list[str]:
    with engine.db.reading() as session:
        if session.scalar(select(func.count(Instance.id))):
            return ["demo data already present"]
    runtime = engine.runtime
    submitted = runtime.start("national", "proposal", started_by="demo.proposer",
                              business_key="DX-2026-001",
                              data={"title": "Số hoá hồ sơ cấp phép xây dựng"})
    task = runtime.open_tasks(submitted.id)[0]
    runtime.complete_task(task.id, {"title": "Số hoá hồ sơ cấp phép xây dựng"},
                          actor="demo.proposer")
    draft = runtime.start("national", "proposal", started_by="demo.proposer",
                          business_key="DX-2026-002",
                          data={"title": "Bản đồ GIS hạ tầng giao thông"})
    return [f"instance {submitted.id} waits for the head's decision",
            f"instance {draft.id} waits for its plan"]
