"""Demo data for ``make run``: every variant's organisation (``org.toml``) and, into an empty
database, a few proposals at different steps."""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from .store import Instance
from .variants import load_variant


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


def seed(engine, processes_dir: Path) -> list[str]:
    lines = seed_orgs(engine, processes_dir)
    with engine.db.reading() as session:
        if session.scalar(select(func.count(Instance.id))):
            return lines + ["demo proposals already present"]
    runtime = engine.runtime
    # the officials of the seeded organisations themselves, their rights checked as anyone's
    proposer = engine.access.principal("laocai.sxd.qlxd.truongphong")
    submitted = runtime.start("lao-cai", "proposal", principal=proposer,
                              business_key="LC-2026-001")
    [plan] = runtime.open_tasks(submitted.id)
    runtime.complete_task(plan.id, demo_plan("Số hoá hồ sơ cấp phép xây dựng"),
                          principal=proposer)
    draft = runtime.start("dak-lak", "proposal",
                          principal=engine.access.principal("daklak.sxd.qhkt.truongphong"),
                          business_key="DL-2026-001")
    return lines + [f"proposal {submitted.business_key} waits for screening by the head",
                    f"proposal {draft.business_key} waits for its plan"]


def demo_plan(title: str) -> dict:
    return {
        "title": title, "field_of_work": "chuyen_doi_so",
        "necessity": "Hồ sơ giấy kéo dài thời gian giải quyết thủ tục.",
        "purpose_requirements": "Rút ngắn thời gian cấp phép xuống 50%.",
        "bottleneck": "Chưa có quy định về tiếp nhận hồ sơ số hoá toàn trình.",
        "content": "Số hoá, ký số và tra cứu hồ sơ trực tuyến.",
        "scope": "Sở Xây dựng", "target_group": "Tổ chức, cá nhân xin cấp phép",
        "start_date": "2026-12-01", "end_date": "2027-06-30", "budget_vnd": 450_000_000,
        "feasibility": "Hạ tầng số của tỉnh đã sẵn sàng.",
        "expected_effectiveness": "Giảm 50% thời gian, 30% chi phí.",
        "removes_unregulated_bottleneck": True, "common_interest": True, "urgent_need": True,
        "no_harm": True,
    }
