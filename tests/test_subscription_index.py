"""Migration 0026 indexes message subscriptions by their instance: the statement a step
drops an instance's subscriptions with (engine.runtime.projection) is answered from it,
and the downgrade takes the index away again."""
from __future__ import annotations

from sqlalchemy import inspect, text

from engine.store import Database
from engine.store.migrate import downgrade, upgrade

from scratch_db import scratch_database


def _indexes(db: Database) -> set[str]:
    return {i["name"] for i in inspect(db.engine).get_indexes("message_subscriptions")}


def _plan(db: Database) -> str:
    """The plan of the DELETE a step drops an instance's subscriptions with (PostgreSQL:
    with sequential scans ruled out, so that an empty table still shows which index
    serves)."""
    statement = ("DELETE FROM message_subscriptions WHERE instance_id = 'i-1' "
                 "AND task_id IN ('t-1', 't-2')")
    with db.engine.connect() as connection:
        if db.is_sqlite:
            return " ".join(str(row[-1]) for row in connection.execute(
                text(f"EXPLAIN QUERY PLAN {statement}")))
        connection.execute(text("SET enable_seqscan = off"))
        plan = " ".join(row[0] for row in connection.execute(text(f"EXPLAIN {statement}")))
        connection.rollback()
        return plan


def test_subscriptions_are_found_by_their_instance_and_the_downgrade_drops_the_index(
        database_url, tmp_path):
    with scratch_database(database_url, tmp_path, "subscription_index") as url:
        db = Database(url)
        try:
            upgrade(db)
            assert "ix_subscription_instance" in _indexes(db)
            assert "ix_subscription_instance" in _plan(db)
            downgrade(db, "0021")
            assert "ix_subscription_instance" not in _indexes(db)
            assert "ix_subscription_name" in _indexes(db)
            upgrade(db)
            assert "ix_subscription_instance" in _indexes(db)
        finally:
            db.dispose()
