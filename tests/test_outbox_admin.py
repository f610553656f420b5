"""Administrators see the e-mail outbox of their variants and send failed or unknown
e-mails again, through the REST API and the web app."""
from __future__ import annotations

import re

from sqlalchemy import select, update

from engine.store import AuditEvent

from engine.store.models import OutboxMessage
from procedures import plan
from test_api import api, complete, is_problem, start  # noqa: F401  (fixture)
from test_web_ui import web_session

PROPOSER = "laocai.sxd.qlxd.truongphong"
HEAD = "laocai.sxd.giamdoc"


def failed_email(api, engine) -> OutboxMessage:
    """The head's e-mail about the new screening task, given up after its attempts."""
    case = start(api, business_key="LC-MAIL")
    complete(api, PROPOSER, case["id"], "submit_plan", plan())
    [message] = engine.notifications.outbox(HEAD)
    with engine.db.transaction() as session:
        session.execute(update(OutboxMessage).where(OutboxMessage.id == message.id).values(
            status="failed", attempts=8, last_error="451 mailbox unavailable"))
    return message


def test_administrators_list_and_requeue_failed_email(api, engine):
    message = failed_email(api, engine)
    listed = api.get("/admin/outbox", "laocai.quantri", params={"status": "failed"}).json()
    assert [m["id"] for m in listed["items"]] == [message.id]
    assert listed["items"][0]["last_error"] == "451 mailbox unavailable"
    assert listed["items"][0]["recipient"] == engine.notifications.email(HEAD)
    # another province's administrator sees none of it; officials may not look
    assert api.get("/admin/outbox", "cantho.quantri").json()["total"] == 0
    is_problem(api.get("/admin/outbox", HEAD), 403, "forbidden")
    is_problem(api.post(f"/admin/outbox/{message.id}/retry", "cantho.quantri"), 404,
               "not-found")
    again = api.post(f"/admin/outbox/{message.id}/retry", "laocai.quantri")
    assert again.status_code == 200 and again.json()["status"] == "pending"
    assert again.json()["attempts"] == 0 and again.json()["last_error"] is None
    is_problem(api.post(f"/admin/outbox/{message.id}/retry", "laocai.quantri"), 409,
               "invalid-state")
    with engine.db.reading() as session:
        [audit] = session.scalars(select(AuditEvent).where(
            AuditEvent.action == "email_requeued")).all()
    assert audit.actor == "laocai.quantri" and audit.details["outbox_id"] == message.id


def test_the_outbox_page_sends_again(api, engine):
    message = failed_email(api, engine)
    web, token = web_session(api, "laocai.quantri")
    page = web.get(f"{api.url}/admin/outbox?status=failed", timeout=30)
    assert page.status_code == 200 and "451 mailbox unavailable" in page.text
    action = re.search(r'action="(/admin/outbox/\d+/retry[^"]*)"', page.text).group(1)
    done = web.post(f"{api.url}{action.replace('&amp;', '&')}", data={"csrf_token": token},
                    timeout=30)
    assert done.status_code == 200 and "451 mailbox unavailable" not in done.text
    [row] = engine.notifications.outbox(HEAD)
    assert row.id == message.id and row.status == "pending"
