"""Migration 0009 copies each candidacy's instance id onto it (the official's instances are
then read from one index), and the downgrade takes the column away again."""
from __future__ import annotations

from sqlalchemy import inspect, text

from engine.queries import InstanceFilters
from engine.store import Database
from engine.store.migrate import downgrade, upgrade
from engine.workflow_engine import WorkflowEngine

from scratch_db import proposal_at_vote, scratch_database

VOTER = "mau.sxd.pgd1"


def _candidacies(db: Database) -> list[tuple]:
    with db.engine.connect() as connection:
        return connection.execute(text(
            "SELECT c.task_id, c.username, c.instance_id, t.instance_id FROM task_candidates c "
            "JOIN human_tasks t ON t.id = c.task_id ORDER BY c.task_id, c.username")).all()


def test_candidacies_get_their_instance_and_lose_it_on_downgrade(database_url, tmp_path,
                                                                 clock):
    with scratch_database(database_url, tmp_path, "candidacies") as url:
        case = proposal_at_vote(url, clock)

        db = Database(url)
        downgrade(db, "0008")
        columns = {c["name"] for c in inspect(db.engine).get_columns("task_candidates")}
        assert "instance_id" not in columns
        upgrade(db)
        rows = _candidacies(db)
        db.engine.dispose()
        assert any(username == VOTER for _, username, _, _ in rows)
        assert all(copied == case.id == owner for _, _, copied, owner in rows)

        fresh = WorkflowEngine(url, clock=clock)
        try:
            # a voter of the case still finds it after the round trip
            voter = fresh.access.principal(VOTER)
            page = fresh.queries.instances(voter, InstanceFilters())
            assert [i.id for i in page.items] == [case.id]
        finally:
            fresh.close()
