"""Rows a unit of work only adds (engine.store.appends): written with it, as given, parents
before children (PostgreSQL: every table in one statement), refused rather than cut short
when a value does not fit, and not written when the unit rolls back."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sqlalchemy import event, select
from sqlalchemy.exc import DataError, IntegrityError, StatementError

from engine.store import HumanTask, TaskCandidate, TaskStatus, Timer, TimerStatus, appends
from engine.store.models import Document

from conftest import ALICE


def _task(instance_id: str, task_id: str, **values) -> dict:
    return dict(id=task_id, instance_id=instance_id, element_id="review", name="Review",
                lane=None, role=None, unit_id=None, positions="", form=None,
                status=TaskStatus.OPEN, assignee=None,
                created_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc), due_at=None,
                **values)


def test_rows_of_several_tables_are_written_as_given_with_the_unit_of_work(engine, review):
    instance = engine.runtime.start("national", "review", principal=ALICE)
    ids = [f"00000000-0000-0000-0000-00000000000{n}" for n in range(3)]
    with engine.db.transaction() as session:
        for task_id in ids:          # the candidates refer to tasks added in the same unit
            appends.add(session, HumanTask.__table__, **_task(instance.id, task_id))
        for task_id, username in [(ids[0], "bob"), (ids[0], "carol"), (ids[2], "dave")]:
            appends.add(session, TaskCandidate.__table__, task_id=task_id,
                        instance_id=instance.id, username=username, task_open=False)
        appends.add(session, Timer.__table__, instance_id=instance.id,
                    definition_id=instance.definition_id, task_id=ids[1], element_id="wait",
                    kind="TimerEventDefinition",
                    due_at=datetime(2026, 5, 6, 7, 8, 9, tzinfo=timezone.utc),
                    status=TimerStatus.PENDING, attempts=0)
    with engine.db.reading() as session:
        tasks = session.scalars(select(HumanTask).where(HumanTask.id.in_(ids))
                                .order_by(HumanTask.id)).all()
        candidates = session.execute(
            select(TaskCandidate.task_id, TaskCandidate.username, TaskCandidate.task_open)
            .where(TaskCandidate.task_id.in_(ids)).order_by(TaskCandidate.username)).all()
        timer = session.scalars(select(Timer).where(Timer.task_id == ids[1])).one()
    assert [(t.id, t.status, t.positions, t.created_at.replace(tzinfo=timezone.utc))
            for t in tasks] == [(i, TaskStatus.OPEN, "",
                                 datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
                                for i in ids]
    assert [tuple(c) for c in candidates] == [(ids[0], "bob", False), (ids[0], "carol", False),
                                              (ids[2], "dave", False)]
    assert (timer.status, timer.element_id, timer.due_at.replace(tzinfo=timezone.utc)) == (
        TimerStatus.PENDING, "wait", datetime(2026, 5, 6, 7, 8, 9, tzinfo=timezone.utc))


def test_values_keep_their_characters_instants_and_types(engine, review):
    """On PostgreSQL a unit's rows go as one JSON array a table, read by the tables' own
    types: characters JSON escapes, times in another zone, enums, booleans and None come
    back as given."""
    from zoneinfo import ZoneInfo
    instance = engine.runtime.start("national", "review", principal=ALICE)
    task_id = "00000000-0000-0000-0000-0000000000c1"
    awkward = 'Đề xuất "số 1" \\ đường\tdẫn\n{x}: 🙂 </p> \u2028 end'
    # (the engine writes UTC; SQLite keeps a time's digits, not its offset)
    zone = ZoneInfo("Asia/Ho_Chi_Minh") if engine.db.engine.dialect.name == "postgresql" \
        else timezone.utc
    at = datetime(2026, 3, 4, 21, 30, 15, 123456, tzinfo=zone)
    with engine.db.transaction() as session:
        appends.add(session, HumanTask.__table__, **{
            **_task(instance.id, task_id), "name": awkward, "due_at": at, "lane": None})
        appends.add(session, TaskCandidate.__table__, task_id=task_id,
                    instance_id=instance.id, username="bob", task_open=True)
        appends.add(session, Timer.__table__, instance_id=instance.id,
                    definition_id=instance.definition_id, task_id=task_id, element_id="wait",
                    kind="TimerEventDefinition", due_at=at, status=TimerStatus.PENDING,
                    attempts=2**31 - 1)
    with engine.db.reading() as session:
        task = session.get(HumanTask, task_id)
        candidate = session.get(TaskCandidate, (task_id, "bob"))
        timer = session.scalars(select(Timer).where(Timer.task_id == task_id)).one()
    assert (task.name, task.lane, task.status) == (awkward, None, TaskStatus.OPEN)
    assert task.due_at.replace(tzinfo=task.due_at.tzinfo or timezone.utc) == at
    assert candidate.task_open is True
    assert (timer.status, timer.attempts) == (TimerStatus.PENDING, 2**31 - 1)
    assert timer.due_at.replace(tzinfo=timer.due_at.tzinfo or timezone.utc) == at


def _candidate_named(instance, task_id: str, username: str) -> tuple:
    return TaskCandidate.__table__, dict(task_id=task_id, instance_id=instance.id,
                                         username=username, task_open=True)


def _timer_tried(instance, task_id: str, attempts: int) -> tuple:
    return Timer.__table__, dict(instance_id=instance.id, definition_id=instance.definition_id,
                                 task_id=task_id, element_id="wait",
                                 kind="TimerEventDefinition",
                                 due_at=datetime(2026, 5, 6, tzinfo=timezone.utc),
                                 status=TimerStatus.PENDING, attempts=attempts)


# a row its column cannot hold: a name too long; an integer past 32 bits; one past 64, which
# JSON as orjson writes it cannot hold either, so the rows go a table at a time
_REFUSED = {"name": lambda i, t: _candidate_named(i, t, "u" * 200),
            "integer": lambda i, t: _timer_tried(i, t, 2**31),
            "huge integer": lambda i, t: _timer_tried(i, t, 2**70)}


@pytest.mark.parametrize("value", sorted(_REFUSED))
def test_a_value_its_column_cannot_hold_is_refused_and_nothing_is_written(
        engine, review, value):
    if engine.db.engine.dialect.name == "sqlite":
        pytest.skip("SQLite enforces neither a string's length nor an integer's range")
    instance = engine.runtime.start("national", "review", principal=ALICE)
    task_id = "00000000-0000-0000-0000-000000000009"
    table, row = _REFUSED[value](instance, task_id)
    with pytest.raises((DataError, StatementError)):
        with engine.db.transaction() as session:
            appends.add(session, HumanTask.__table__, **_task(instance.id, task_id))
            appends.add(session, table, **row)
    with engine.db.reading() as session:
        assert session.get(HumanTask, task_id) is None
        assert session.execute(select(table).where(table.c.task_id == task_id)).all() == []


def test_a_document_s_large_values_go_in_a_statement_of_their_own(engine, review):
    """A document's DOCX and context (tens to hundreds of KB) are not quoted into the arrays
    of the statement that writes a step's other rows together on PostgreSQL (quoting them
    cost several times the INSERT): its row has its own INSERT, and every value is kept
    exactly, whatever its bytes and characters."""
    instance = engine.runtime.start("national", "review", principal=ALICE)
    task_id = "00000000-0000-0000-0000-00000000000d"
    content = bytes(range(256)) * 200
    context = {"text": 'dòng "một"\\ {hai}\n' * 500, "list": [1, "2", None]}
    inserts = []

    def seen(_conn, _cursor, statement, _params, _context, _many):
        if statement.lstrip().upper().startswith(("INSERT", "WITH")):
            inserts.append(statement)
    event.listen(engine.db.engine, "before_cursor_execute", seen)
    try:
        with engine.db.transaction() as session:
            appends.add(session, HumanTask.__table__, **_task(instance.id, task_id))
            appends.add(session, TaskCandidate.__table__, task_id=task_id,
                        instance_id=instance.id, username="bob", task_open=True)
            appends.add(session, Document.__table__, **_document(instance, content, context))
    finally:
        event.remove(engine.db.engine, "before_cursor_execute", seen)
    documents = [s for s in inserts if "documents" in s]
    assert len(documents) == 1 and "human_tasks" not in documents[0]
    if engine.db.engine.dialect.name == "postgresql":   # the others still together
        assert len(inserts) == 2
    with engine.db.reading() as session:
        stored = session.get(Document, "d0c00000-0000-0000-0000-000000000001")
        assert (stored.content, stored.context) == (content, context)
        assert session.get(HumanTask, task_id) is not None


def _document(instance, content: bytes, context: dict) -> dict:
    return dict(id="d0c00000-0000-0000-0000-000000000001", instance_id=instance.id,
                variant="national", element_id="decide", template="decision.docx",
                kind="QĐ", agency_id="mau", year=2026, number=1, reference="1/QĐ-MAU",
                title="Quyết định", legal_basis=None,
                issued_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
                issued_by=ALICE.username, signer=None, replaces_id=None,
                correction_reason=None, context=context,
                sha256="0" * 64, content=content)


def test_many_rows_are_written_as_given_and_refused_as_the_insert_refuses_them(engine, review):
    """PostgreSQL writes a unit's rows with COPY when there are many (a reporting cycle's
    units): the same values, and the same errors (SQLAlchemy's), as the INSERT."""
    instance = engine.runtime.start("national", "review", principal=ALICE)
    ids = [f"00000000-0000-0000-0001-{n:012d}" for n in range(appends.COPY_ROWS // 2)]
    due = datetime(2026, 5, 6, 7, 8, 9, tzinfo=timezone.utc)
    with engine.db.transaction() as session:
        for n, task_id in enumerate(ids):
            appends.add(session, HumanTask.__table__, **{
                **_task(instance.id, task_id), "due_at": due if n % 2 else None})
            appends.add(session, TaskCandidate.__table__, task_id=task_id,
                        instance_id=instance.id, username=f"Đỗ \\t\"{n}\"\n,",
                        task_open=bool(n % 3))
        appends.add(session, Timer.__table__, instance_id=instance.id,
                    definition_id=instance.definition_id, task_id=ids[1], element_id="wait",
                    kind="TimerEventDefinition", due_at=due, status=TimerStatus.PENDING,
                    attempts=0)
    with engine.db.reading() as session:
        tasks = session.execute(select(HumanTask.id, HumanTask.status, HumanTask.due_at,
                                       HumanTask.positions, HumanTask.form)
                                .where(HumanTask.id.in_(ids)).order_by(HumanTask.id)).all()
        candidates = session.execute(
            select(TaskCandidate.task_id, TaskCandidate.username, TaskCandidate.task_open)
            .where(TaskCandidate.task_id.in_(ids)).order_by(TaskCandidate.task_id)).all()
        timer = session.scalars(select(Timer).where(Timer.task_id == ids[1])).one()
    assert [(t.id, t.status, t.due_at and t.due_at.replace(tzinfo=timezone.utc), t.positions,
             t.form) for t in tasks] == [
        (task_id, TaskStatus.OPEN, due if n % 2 else None, "", None)
        for n, task_id in enumerate(ids)]
    assert [tuple(c) for c in candidates] == [(task_id, f"Đỗ \\t\"{n}\"\n,", bool(n % 3))
                                              for n, task_id in enumerate(ids)]
    assert (timer.status, timer.attempts, timer.due_at.replace(tzinfo=timezone.utc)) == (
        TimerStatus.PENDING, 0, due)

    if engine.db.engine.dialect.name == "sqlite":
        return                   # SQLite enforces neither a string's length nor this key
    more = [f"00000000-0000-0000-0002-{n:012d}" for n in range(appends.COPY_ROWS)]
    with pytest.raises(DataError):                       # a value too long: refused
        with engine.db.transaction() as session:
            for task_id in more:
                appends.add(session, HumanTask.__table__, **_task(instance.id, task_id))
            appends.add(session, TaskCandidate.__table__, task_id=more[0],
                        instance_id=instance.id, username="u" * 200, task_open=True)
    with pytest.raises(IntegrityError):                  # a task that does not exist
        with engine.db.transaction() as session:
            for task_id in more:
                appends.add(session, TaskCandidate.__table__, task_id=task_id,
                            instance_id=instance.id, username="bob", task_open=True)
    with engine.db.reading() as session:
        assert session.scalars(select(HumanTask.id).where(HumanTask.id.in_(more))).all() == []
        assert session.scalars(select(TaskCandidate.task_id).where(
            TaskCandidate.task_id.in_(more))).all() == []


def test_notifications_name_the_messages_queued_with_them(engine, review):
    """Notifications queued with e-mails' messages (some with one, some without) are each
    written naming their own message: the messages go first, their keys read back in the
    order given, then the notifications (on PostgreSQL in one statement with the other
    tables' rows)."""
    from engine.store.models import Notification, OutboxMessage
    instance = engine.runtime.start("national", "review", principal=ALICE)
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    people = ["bob", "carol", "dave", "erin", "frank"]
    mailed = {"bob", "dave", "frank"}
    with engine.db.transaction() as session:
        appends.add(session, HumanTask.__table__,
                    **_task(instance.id, "00000000-0000-0000-0000-0000000000aa"))
        for username in people:
            message = dict(username=username, recipient=f"{username}@example.org",
                           subject=f"Subject for {username}", text_body=f"Text {username}",
                           html_body=f"<p>{username}</p>", kind="task_available",
                           status="pending", attempts=0, next_attempt_at=at, created_at=at)
            appends.add(session, Notification.__table__, username=username,
                        kind="task_available", title=f"Title for {username}", body="Body",
                        task_id=None, instance_id=instance.id, definition_id=None,
                        link="/", created_at=at, read_at=None,
                        email_status="outbox" if username in mailed else "none",
                        outbox_id=None, outbox=message if username in mailed else None)
    with engine.db.reading() as session:
        rows = session.execute(
            select(Notification.username, Notification.title, OutboxMessage.username,
                   OutboxMessage.subject, OutboxMessage.recipient)
            .outerjoin(OutboxMessage, OutboxMessage.id == Notification.outbox_id)
            .where(Notification.instance_id == instance.id,
                   Notification.kind == "task_available")
            .order_by(Notification.username)).all()
    assert [tuple(r) for r in rows] == [
        (u, f"Title for {u}", *((u, f"Subject for {u}", f"{u}@example.org")
                                if u in mailed else (None, None, None)))
        for u in people]
