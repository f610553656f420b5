"""Bulk history for figure 3: finished proposals (instance rows, completed human tasks with
their candidates, audit events, decisions) and open tasks, written with INSERT ... SELECT
over a generated series, in seconds for a million instances instead of hours through the
engine.

The history is spread the way a country's is: over ``history / 1000`` officials (one of them
the official whose queries are measured), so each official has about a thousand finished
cases of their own whatever the total; what grows is everyone else's history. Stored state of
a finished instance is a small stub (a real one is ~5 KB compressed and lives out of line, in
TOAST on PostgreSQL, so it does not change what the queries read).
"""
from __future__ import annotations

from sqlalchemy import text

from engine.serialization import compress_state

TASKS_PER_INSTANCE = 4          # completed human tasks of a finished proposal (with candidate)
AUDIT_PER_INSTANCE = 6          # audit events of a finished proposal
DECISIONS_PER_INSTANCE = 2
ELEMENTS = ("submit_plan", "screening", "party_opinion", "decide")
OPEN_PER_MEASURED_USER = 50     # open tasks in the measured official's inbox


def _stub_state(dialect: str) -> str:
    """SQL literal of an empty workflow's stored state (compressed ``{}``)."""
    blob = compress_state("{}").hex()
    return f"'\\x{blob}'::bytea" if dialect == "postgresql" else f"X'{blob}'"


def _numbers(dialect: str, bound: str) -> str:
    """A row source ``s(i)`` of 1..bound."""
    if dialect == "postgresql":
        return f"generate_series(1, {bound}) AS s(i)"
    return (f"(WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < {bound}) "
            f"SELECT i FROM c) AS s")


def _minutes_ago(dialect: str, expression: str) -> str:
    if dialect == "postgresql":
        return f"(timestamptz '2026-11-01 00:00:00+00' - ({expression}) * interval '1 minute')"
    return f"datetime('2026-11-01 00:00:00', '-' || ({expression}) || ' minutes')"


def _user(expression: str, measured: str, prefix: str) -> str:
    """Official number ``expression``: 0 is the measured official, others are synthetic."""
    return f"(CASE WHEN ({expression}) = 0 THEN '{measured}' ELSE '{prefix}' || ({expression}) END)"


def generate(connection, *, definition_id: int, history: int, open_tasks: int,
             measured_user: str, measured_unit: str, chunk: int = 200_000) -> None:
    """Write ``history`` finished proposals and ``open_tasks`` open tasks (on running
    instances) in bulk."""
    dialect = connection.dialect.name
    officials = max(1, history // 1000)
    for first in range(0, history, chunk):
        _finished(connection, dialect, definition_id, first, min(chunk, history - first),
                  officials, measured_user, measured_unit)
    _open(connection, dialect, definition_id, open_tasks, measured_user, measured_unit)


def settle(engine) -> None:
    """What autovacuum does to a database that grew over years: statistics and visibility
    maps (index-only scans), so queries are measured as they run in production, not on
    freshly written pages."""
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE"))


def _finished(connection, dialect, definition_id, first, count, officials, measured, unit):
    n = "(s.i + %d)" % first
    who = _user(f"{n} % {officials}", measured, "hist.user")
    where_unit = (f"(CASE WHEN ({n} % {officials}) = 0 THEN '{unit}' "
                  f"ELSE 'hist.u' || ({n} % {officials}) END)")
    started = _minutes_ago(dialect, f"{n} * 3 + 1440")
    ended = _minutes_ago(dialect, f"{n} * 3")
    numbers = _numbers(dialect, str(count))
    connection.execute(text(f"""
        INSERT INTO instances (id, definition_id, variant, definition_key, business_key, status,
            state_data, state_format, version, started_by, started_at, updated_at, ended_at, stage,
            latest_decision, unit_id, audit_seq, audit_head)
        SELECT 'hist-' || {n}, {definition_id}, 'national', 'proposal', 'LS-' || {n},
            'completed', {_stub_state(dialect)}, 'nd73-2/history-stub', 14, {who}, {started},
            {ended}, {ended},
            'recognised', 'completed', {where_unit}, {AUDIT_PER_INSTANCE}, NULL
        FROM {numbers}"""))
    for t, element in enumerate(ELEMENTS[:TASKS_PER_INSTANCE]):
        connection.execute(text(f"""
            INSERT INTO human_tasks (id, instance_id, element_id, name, lane, form, role,
                unit_id, status, assignee, created_at, due_at, completed_at, completed_by)
            SELECT 'hist-' || {n} || '-{t}', 'hist-' || {n}, '{element}', '{element}',
                'decider', '{element}.schema.json', 'decider', {where_unit}, 'completed', NULL,
                {started}, {ended}, {ended}, {who}
            FROM {numbers}"""))
        connection.execute(text(f"""
            INSERT INTO task_candidates (task_id, instance_id, username, task_open)
            SELECT 'hist-' || {n} || '-{t}', 'hist-' || {n}, {who}, FALSE FROM {numbers}"""))
    for a in range(AUDIT_PER_INSTANCE):
        action = "instance_started" if a == 0 else "task_completed"
        connection.execute(text(f"""
            INSERT INTO audit_events (instance_id, definition_id, at, actor, action, element_id,
                details, seq, hash)
            SELECT 'hist-' || {n}, {definition_id}, {ended}, {who}, '{action}', 'screening',
                '{{"task_id": "hist"}}', {a + 1}, NULL
            FROM {numbers}"""))
    for d, (field, value) in enumerate((("decision", "approve"), ("outcome", "completed"))[
            :DECISIONS_PER_INSTANCE]):
        connection.execute(text(f"""
            INSERT INTO decisions (instance_id, variant, definition_key, unit_id, element_id,
                field, value, actor, at)
            SELECT 'hist-' || {n}, 'national', 'proposal', {where_unit}, 'decide', '{field}',
                '{value}', {who}, {ended}
            FROM {numbers}"""))


def _open(connection, dialect, definition_id, count, measured, unit):
    """Open tasks of running instances: ``OPEN_PER_MEASURED_USER`` of them the measured
    official's, the rest spread over 200 other officials."""
    numbers = _numbers(dialect, str(count))
    share = max(1, count // OPEN_PER_MEASURED_USER)
    who = (f"(CASE WHEN s.i % {share} = 0 THEN '{measured}' "
           f"ELSE 'open.user' || (s.i % 200) END)")
    where_unit = f"(CASE WHEN s.i % {share} = 0 THEN '{unit}' ELSE 'open.u' || (s.i % 200) END)"
    at = _minutes_ago(dialect, "s.i")
    due = _minutes_ago(dialect, "s.i - 14400")
    connection.execute(text(f"""
        INSERT INTO instances (id, definition_id, variant, definition_key, business_key, status,
            state_data, state_format, version, started_by, started_at, updated_at, stage, unit_id,
            audit_seq)
        SELECT 'open-' || s.i, {definition_id}, 'national', 'proposal', 'LO-' || s.i,
            'running', {_stub_state(dialect)}, 'nd73-2/history-stub', 3,
            'open.proposer' || (s.i % 500), {at},
            {at}, 'under_review', {where_unit}, 2
        FROM {numbers}"""))
    connection.execute(text(f"""
        INSERT INTO human_tasks (id, instance_id, element_id, name, lane, form, role, unit_id,
            status, assignee, created_at, due_at)
        SELECT 'open-' || s.i || '-t', 'open-' || s.i, 'screening', 'screening', 'decider',
            'screening.schema.json', 'decider', {where_unit}, 'open', NULL, {at}, {due}
        FROM {numbers}"""))
    connection.execute(text(f"""
        INSERT INTO task_candidates (task_id, instance_id, username)
        SELECT 'open-' || s.i || '-t', 'open-' || s.i, {who} FROM {numbers}"""))
