"""Migration 0008 stores instance state compressed: a running proposal written before it is
converted in place (and back by the downgrade), then carries on after the upgrade. Migration
0020 adds the deltas: its downgrade folds them into the snapshot, and an instance without
deltas (as every instance was before it) loads from its snapshot alone."""
from __future__ import annotations

import json

from sqlalchemy import text

from engine.serialization import apply_delta, state_text
from engine.store import Database, Instance
from engine.store.migrate import downgrade, upgrade
from engine.workflow_engine import WorkflowEngine

from scratch_db import proposal_at_vote, scratch_database


def test_state_is_converted_both_ways_and_the_instance_carries_on(database_url, tmp_path,
                                                                  clock):
    with scratch_database(database_url, tmp_path, "statemigration") as url:
        case = proposal_at_vote(url, clock)
        db = Database(url)
        with db.reading() as session:
            stored = session.get(Instance, case.id)
        compressed, version = stored.state, stored.version
        assert stored.state_format.startswith("nd73-2/")
        assert json.loads(state_text(compressed))["root"]
        # the state as the snapshot and the deltas after it give it (0020's downgrade folds
        # the deltas into the snapshot)
        whole = json.loads(state_text(compressed))
        with db.engine.connect() as connection:
            deltas = connection.execute(text(
                "SELECT data FROM instance_state_deltas WHERE instance_id = :id ORDER BY seq"),
                {"id": case.id}).scalars().all()
        assert deltas                       # the steps after the start stored deltas
        for delta in deltas:
            apply_delta(whole, json.loads(state_text(delta)))
        downgrade(db, "0007")
        with db.engine.connect() as connection:
            old_text, old_format = connection.execute(text(
                "SELECT state, state_format FROM instances WHERE id = :id"),
                {"id": case.id}).one()
        assert json.loads(old_text) == whole and old_format.startswith("nd73-1/")
        upgrade(db)
        db.engine.dispose()

        fresh = WorkflowEngine(url, clock=clock)     # nothing of the case kept in memory
        try:
            with fresh.db.reading() as session:
                again = session.get(Instance, case.id)
            assert state_text(again.state) == old_text and again.version == version
            assert again.state_format.startswith("nd73-2/")
            case.engine = fresh
            case.vote({voter: "for" for voter in case.voters()})
            assert "decide" in case.open_elements()
        finally:
            fresh.close()
