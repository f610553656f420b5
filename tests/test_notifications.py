"""Notifications end to end: a real SMTP server (aiosmtpd on loopback) receives exactly the
messages of a proposal's whole path, reminders and escalations come from moving the engine
clock, the outbox sends each message at most once across scheduler restarts and killed
senders, a failing SMTP server leaves messages queued with backoff while the workflow goes
on, and the e-mail preference (immediate, daily digest, off) is honoured."""
from __future__ import annotations

import io
import json
import logging
import shutil
import socket
import subprocess
import sys
import threading
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path

import pytest
from sqlalchemy import event
from aiosmtpd.controller import Controller
from jinja2 import TemplateNotFound

from engine.clock import as_utc
from engine.demo import seed_orgs
from engine.errors import DefinitionInvalid, InvalidData, NotFound
from engine.logs import json_handler
from engine.notifications.mailer import SmtpSettings
from engine.notifications.outbox import OUTBOX_LEASES
from engine.notifications.templates import Renderer, VersionLoader, is_simple
from engine.scheduler import SCHEDULER, Scheduler
from engine.store.models import OutboxMessage

from conftest import PROJECT, child_environment
from procedures import SCREENED, Case, as_user, deploy_library, evaluation_meeting, \
    implement_and_evaluate, leadership_meeting, plan

ND73 = Path(sys.executable).with_name("nd73")
PROPOSER = "mau.sxd.qlxd.truongphong"
HEAD = "mau.sxd.giamdoc"
DOMAIN = "demo.nd73.local"


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Mailbox:
    """aiosmtpd handler: keeps what it accepts; answers ``refuse_with`` instead when set."""

    def __init__(self):
        self.messages = []
        self.last = []                        # the messages of the last take()
        self.refuse_with: str | None = None

    async def handle_DATA(self, server, session, envelope):
        if self.refuse_with:
            return self.refuse_with
        self.messages.append((list(envelope.rcpt_tos),
                              message_from_bytes(envelope.content, policy=default_policy)))
        return "250 OK"

    def take(self) -> list[tuple[str, str]]:
        """(recipient, subject) of the messages received since the last call, sorted."""
        taken = sorted((rcpt[0], str(msg["Subject"])) for rcpt, msg in self.messages)
        self.last, self.messages = self.messages, []
        return taken


@pytest.fixture
def mailbox():
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    box.port = controller.port
    yield box
    controller.stop()


@pytest.fixture
def library(engine):
    deploy_library(engine)
    return engine


def smtp_to(port: int) -> SmtpSettings:
    return SmtpSettings(host="127.0.0.1", port=port, tls="none",
                        sender="ND73 Tỉnh Mẫu <no-reply@nd73.test>")


def scheduler(engine, port: int, owner: str = "s1") -> Scheduler:
    return Scheduler(engine, owner=owner, smtp=smtp_to(port))


def mail(username: str, subject: str) -> tuple[str, str]:
    return f"{username}@{DOMAIN}", subject


def outbox(engine) -> list[OutboxMessage]:
    return engine.notifications.outbox()


def test_a_proposals_whole_path_sends_exactly_the_expected_mail(library, clock, mailbox):
    sender = scheduler(library, mailbox.port)

    def step() -> list[tuple[str, str]]:
        sender.run_due()
        sender.send_mail()
        return mailbox.take()

    case = Case.start(library, "national", "proposal", PROPOSER, business_key="DX-7")
    assert step() == []                           # nobody is told of what they just did
    case.do("submit_plan", plan(), by=PROPOSER)
    assert step() == [mail(HEAD, "[ND73] Công việc mới: Tiếp nhận, xem xét phạm vi và tính "
                                 "chất – DX-7")]

    clock.set(utc(2026, 1, 14, 9, 59))            # 16:59 on the 7th working day: not late
    assert step() == []
    clock.set(utc(2026, 1, 14, 10, 1))
    assert step() == [mail(HEAD, "[ND73] Nhắc hạn: Tiếp nhận, xem xét phạm vi và tính chất "
                                 "– DX-7")]
    clock.set(utc(2026, 1, 16, 10, 1))            # two working days later: escalated
    assert step() == [
        mail("mau.chutich", "[ND73] Quá hạn: Tiếp nhận, xem xét phạm vi và tính chất – DX-7"),
        mail(HEAD, "[ND73] Quá hạn, đã báo cáo cấp trên: Tiếp nhận, xem xét phạm vi và tính "
                   "chất – DX-7")]

    case.do("screening", {**SCREENED, "is_complex": False}, by=HEAD)
    assert step() == [mail("mau.sxd.pgd1", "[ND73] Công việc mới: Cấp ủy cho ý kiến – DX-7")]
    case.do("party_opinion", {"party_opinion": "agree"}, by="mau.sxd.pgd1")
    # the leadership meeting: its chair or the office's staff, its secretary, record it
    meeting = "[ND73] Công việc mới: Ghi biên bản họp tập thể lãnh đạo – DX-7"
    assert step() == [mail(HEAD, meeting), mail("mau.sxd.vp.chanhvp", meeting),
                      mail("mau.sxd.vp.chuyenvien", meeting)]
    case.do("leadership_meeting", leadership_meeting(
        {HEAD: "for", "mau.sxd.pgd1": "for", "mau.sxd.pgd2": "for", "mau.sxd.pgd3": "against"},
        "2026-01-16"), by="mau.sxd.vp.chuyenvien")
    assert step() == [mail(HEAD, "[ND73] Công việc mới: Quyết định phê duyệt hoặc từ chối – "
                                 "DX-7")]
    case.do("decide", {"decision": "approve"}, by=HEAD)
    assert step() == [
        mail(PROPOSER, "[ND73] Công việc mới: Triển khai và báo ngày hoàn thành – DX-7"),
        mail(PROPOSER, "[ND73] Đề xuất DX-7 đã được phê duyệt")]
    [(_, message)] = [m for m in mailbox.last if "phê duyệt" in str(m[1]["Subject"])]
    assert message["To"].addresses[0].display_name == "Võ Thị Tâm"
    assert message["From"].addresses[0].addr_spec == "no-reply@nd73.test"
    assert message.is_multipart() and message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "Kính gửi đồng chí Võ Thị Tâm," in text \
        and "Quyết định phê duyệt đề xuất đổi mới, sáng tạo số 01/QĐ-SXD ngày " in text
    assert f"http://127.0.0.1:8000/instances/{case.id}" in text
    assert "<h1" in html and "Đề xuất đã được phê duyệt" in html
    assert f'href="http://127.0.0.1:8000/instances/{case.id}"' in html

    clock.set(utc(2027, 6, 30, 2, 0))             # the work is reported done that day
    assert step()                # meanwhile the year's reporting cycles opened and mailed
    case.do("implement", {"finished_on": "2027-06-30"}, by=PROPOSER)
    assert step() == []          # the report is the implementer's next step: nobody is told
    case.do("report_completion", {"result_summary": "Xong"}, by=PROPOSER)
    assert step() == [mail("mau.sxd.pgd1", "[ND73] Công việc mới: Cấp ủy cho ý kiến về kết "
                                           "quả – DX-7")]
    case.do("party_evaluation_opinion", {"party_opinion": "agree"}, by="mau.sxd.pgd1")
    assert step() == [mail(HEAD, "[ND73] Công việc mới: "
                                 "Họp tập thể lãnh đạo đánh giá kết quả thực hiện – DX-7")]
    case.do("evaluate", evaluation_meeting(case, "completed"), by=HEAD)
    notice = "[ND73] Công việc mới: Thông báo kết quả đánh giá – DX-7"
    assert step() == [mail("mau.sxd.vp.chanhvp", notice), mail("mau.sxd.vp.chuyenvien", notice)]
    case.do("notify_result", {},
            by="mau.sxd.vp.chanhvp")
    assert step() == [mail(HEAD, "[ND73] Công việc mới: Công nhận, khuyến khích – DX-7")]
    case.do("recognition", {"measures": ["commendation"]}, by=HEAD)
    assert step() == [mail(PROPOSER, "[ND73] Đề xuất DX-7 đã được công nhận")]
    assert (case.instance.status, case.instance.stage) == ("completed", "recognised")

    assert {m.status for m in outbox(library)} == {"sent"}
    assert step() == []                           # nothing is ever sent twice


def test_in_app_notifications_link_to_the_task_or_the_instance(library):
    case = Case.start(library, "national", "proposal", PROPOSER, business_key="DX-8")
    case.do("submit_plan", plan(), by=PROPOSER)
    [screening] = case.open("screening")
    assert library.notifications.unread_count(HEAD) == 1
    [item] = library.notifications.list_for(HEAD)
    assert set(item) == {"id", "kind", "title", "body", "task_id", "instance_id", "link",
                         "created_at", "read_at"}
    assert (item["kind"], item["task_id"], item["instance_id"], item["link"]) == (
        "task_available", screening.id, case.id, f"/tasks/{screening.id}")
    assert item["created_at"].tzinfo is not None and item["read_at"] is None
    assert "Hạn xử lý: 14/01/2026 17:00." in item["body"]     # dd/mm/yyyy, Hà Nội time
    assert item["title"] == "[ND73] Công việc mới: Tiếp nhận, xem xét phạm vi và tính chất – DX-8"
    # in the app the title is the link: the body has neither its address nor the
    # e-mail's signature, which the e-mail itself keeps
    assert "/tasks/" not in item["body"] and "không trả lời" not in item["body"]
    assert item["body"].rstrip().endswith("Hạn xử lý: 14/01/2026 17:00.")
    [message] = [m for m in outbox(library) if m.username == HEAD]
    assert f"/tasks/{screening.id}" in message.text_body
    assert "Vui lòng không trả lời thư này." in message.text_body

    case.do("screening", {**SCREENED, "is_complex": False}, by=HEAD)
    case.do("party_opinion", {"party_opinion": "agree"}, by="mau.sxd.pgd1")
    first, second = library.notifications.list_for(HEAD)        # newest first
    assert first["kind"] == "task_available" and first["id"] > second["id"]
    assert library.notifications.mark_read(HEAD, [second["id"]]) == 1
    assert library.notifications.mark_read(HEAD, [second["id"]]) == 0
    listed = library.notifications.list_for(HEAD)
    assert [n["id"] for n in listed] == [first["id"], second["id"]]   # unread first
    assert listed[1]["read_at"] is not None
    assert library.notifications.list_for(HEAD, unread_only=True) == [listed[0]]
    with pytest.raises(NotFound):                               # another user's: refused
        library.notifications.mark_read("mau.sxd.pgd2", [first["id"]])
    with pytest.raises(NotFound):                               # beyond any stored id
        library.notifications.mark_read(HEAD, [first["id"], 2**40])
    with pytest.raises(InvalidData):
        library.notifications.mark_read(HEAD, ["abc"])
    assert library.notifications.unread_count(HEAD) == 1
    assert library.notifications.mark_read(HEAD) == 1
    assert library.notifications.unread_count(HEAD) == 0


def test_a_refusal_tells_the_proposer_the_reasons(library, mailbox):
    case = Case.start(library, "national", "proposal", PROPOSER, business_key="DX-9")
    case.do("submit_plan", plan(), by=PROPOSER)
    case.do("screening", {**SCREENED, "is_complex": False}, by=HEAD)
    case.do("party_opinion", {"party_opinion": "agree"}, by="mau.sxd.pgd1")
    case.vote({HEAD: "against", "mau.sxd.pgd1": "against", "mau.sxd.pgd2": "for",
               "mau.sxd.pgd3": "against"})
    case.do("decide", {"decision": "reject", "refusal_reasons": "Đã có quy định điều chỉnh"},
            by=HEAD)
    [refusal] = [n for n in library.notifications.list_for(PROPOSER)
                 if n["kind"] == "proposal_refused"]
    assert refusal["link"] == f"/instances/{case.id}"
    assert refusal["title"] == "[ND73] Đề xuất DX-9 không được phê duyệt"
    assert "Lý do: Đã có quy định điều chỉnh" in refusal["body"]
    scheduler(library, mailbox.port).send_mail()
    [(rcpt, message)] = [m for m in mailbox.messages if m[0] == [f"{PROPOSER}@{DOMAIN}"]]
    assert "Lý do: Đã có quy định điều chỉnh" in message.get_body(("html",)).get_content()


def test_a_protection_decision_tells_the_proposer(library):
    case = Case.start(library, "national", "proposal", PROPOSER, business_key="DX-18")
    case.do("submit_plan", plan(), by=PROPOSER)
    case.do("screening", {**SCREENED, "is_complex": False}, by=HEAD)
    case.do("party_opinion", {"party_opinion": "agree"}, by="mau.sxd.pgd1")
    case.vote({v: "for" for v in case.voters()})
    case.do("decide", {"decision": "approve"}, by=HEAD)
    implement_and_evaluate(case, "not_completed", PROPOSER)
    case.do("submit_protection_request",
            {"claimed_outcome": "not_completed", "facts": "Khách quan"}, by=PROPOSER)
    case.do("assess", {"followed_policy": True, "pure_motives": True, "common_interest": True,
                       "abuse": False, "assessment": "Đúng chủ trương"}, by=HEAD)
    case.do("protection_party_opinion", {"party_opinion": "agree"}, by="mau.sxd.pgd1")
    case.do("decide_protection", {"protection_decision": "excluded",
                                  "protection_reasons": "Điều 11"}, by=HEAD)
    [decided] = [n for n in library.notifications.list_for(PROPOSER)
                 if n["kind"] == "protection_decided"]
    assert decided["title"] == "[ND73] Đã có quyết định về việc bảo vệ – DX-18"
    assert ("đã có quyết định (Điều 11 Nghị định 73/2023/NĐ-CP): được loại trừ trách nhiệm."
            in decided["body"])
    assert "Căn cứ, lý do: Điều 11" in decided["body"]


def test_outbox_survives_a_scheduler_restart_and_a_killed_sender(library, clock, mailbox):
    case = Case.start(library, "national", "proposal", PROPOSER, business_key="DX-10")
    case.do("submit_plan", plan(), by=PROPOSER)
    case.do("screening", {**SCREENED, "is_complex": False}, by=HEAD)
    case.do("party_opinion", {"party_opinion": "agree"}, by="mau.sxd.pgd1")
    queued = [m.id for m in outbox(library)]
    assert len(queued) == 5
    # a sender claims everything and is killed before handing anything over…
    dead = scheduler(library, mailbox.port, owner="dead")
    assert dead.outbox.claim() == queued
    # …except one message, which it was handing to the SMTP server when it died
    assert dead.outbox.queue.move(queued[0], "pending", "sending", lease="renew")

    restarted = scheduler(library, mailbox.port, owner="s2")
    assert restarted.send_mail() == 0             # the dead sender's claims still hold
    clock.advance(minutes=5, seconds=1)           # …until its lease expires
    assert restarted.send_mail() == 4
    assert len(mailbox.take()) == 4
    statuses = {m.id: m.status for m in outbox(library)}
    assert statuses[queued[0]] == "unknown"       # maybe delivered: never sent again
    assert [statuses[i] for i in queued[1:]] == ["sent"] * 4
    [interrupted] = [m for m in outbox(library) if m.id == queued[0]]
    assert "not sent again" in interrupted.last_error

    clock.advance(hours=1)
    for owner in ("s3", "s4"):                    # more restarts send nothing more
        assert scheduler(library, mailbox.port, owner=owner).send_mail() == 0
    assert mailbox.take() == []


def test_scheduler_processes_configured_from_the_environment_send_once(library, mailbox):
    """``nd73 scheduler --once`` as separate processes: SMTP settings from ND73_SMTP_*, and
    a second process started after the first sends nothing again."""
    case = Case.start(library, "national", "proposal", PROPOSER, business_key="DX-17")
    case.do("submit_plan", plan(), by=PROPOSER)
    case.do("screening", {**SCREENED, "is_complex": False}, by=HEAD)
    env = {**child_environment(), "ND73_DATABASE_URL": library.db.url,
           "ND73_SMTP_HOST": "127.0.0.1",
           "ND73_SMTP_PORT": str(mailbox.port), "ND73_SMTP_TLS": "none",
           "ND73_SMTP_SENDER": "ND73 <no-reply@nd73.test>"}
    runs = [subprocess.run([str(ND73), "scheduler", "--once"], capture_output=True, text=True,
                           env=env, cwd=PROJECT, timeout=120) for _ in range(2)]
    assert [r.returncode for r in runs] == [0, 0], runs[0].stderr
    # on the wall clock, the first process also fires what came due since January 2026
    # (reminders, escalations, reporting cycles): each of its messages arrives exactly once
    rows = outbox(library)
    assert {m.status for m in rows} == {"sent"} and len(rows) > 2
    assert f"sent {len(rows)} e-mail(s)" in runs[0].stdout
    assert "sent 0 e-mail(s)" in runs[1].stdout
    received = mailbox.take()
    assert received == sorted((m.recipient, m.subject) for m in rows)
    assert {mail(HEAD, "[ND73] Công việc mới: Tiếp nhận, xem xét phạm vi và tính chất – DX-17"),
            mail("mau.sxd.pgd1", "[ND73] Công việc mới: Cấp ủy cho ý kiến – DX-17")
            } <= set(received)


def test_two_schedulers_at_once_send_each_message_once(library, mailbox):
    for number in range(3):
        case = Case.start(library, "national", "proposal", PROPOSER,
                          business_key=f"DX-2{number}")
        case.do("submit_plan", plan(), by=PROPOSER)
        case.do("screening", {**SCREENED, "is_complex": False}, by=HEAD)
    rows = outbox(library)
    assert len(rows) == 6
    senders = [scheduler(library, mailbox.port, owner=f"s{i}") for i in (1, 2)]
    for sender in senders:
        sender.outbox.batch = 2                   # several claims each, interleaved
    barrier = threading.Barrier(2)
    sent = {}

    def run(sender):
        barrier.wait()
        sent[sender.owner] = sender.send_mail()

    threads = [threading.Thread(target=run, args=(s,)) for s in senders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sum(sent.values()) == 6
    assert mailbox.take() == sorted((m.recipient, m.subject) for m in rows)
    assert {m.status for m in outbox(library)} == {"sent"}


def test_a_failing_smtp_server_leaves_messages_queued_and_the_workflow_unaffected(
        library, clock, mailbox):
    mailbox.refuse_with = "451 4.3.0 Thử lại sau"
    case = Case.start(library, "national", "proposal", PROPOSER, business_key="DX-11")
    case.do("submit_plan", plan(), by=PROPOSER)
    sender = scheduler(library, mailbox.port)
    assert sender.send_mail() == 0
    [queued] = outbox(library)
    assert (queued.status, queued.attempts, queued.lock_owner) == ("pending", 1, None)
    assert "451" in queued.last_error
    assert as_utc(queued.next_attempt_at) == clock.now() + timedelta(minutes=1)

    case.do("screening", {**SCREENED, "is_complex": False}, by=HEAD)     # the workflow goes on
    assert case.open_elements() == ["party_opinion"]
    clock.advance(seconds=30)
    assert sender.send_mail() == 0                # the first one waits for its backoff
    by_id = {m.id: m for m in outbox(library)}
    assert by_id[queued.id].attempts == 1 and len(by_id) == 2
    assert max(m.attempts for m in by_id.values() if m.id != queued.id) == 1
    clock.advance(seconds=31)
    assert sender.send_mail() == 0                # refused again: 2 minutes now
    assert {m.id: m.attempts for m in outbox(library)} == {
        m.id: 2 if m.id == queued.id else 1 for m in outbox(library)}

    mailbox.refuse_with = None
    clock.advance(minutes=2, seconds=1)
    assert sender.send_mail() == 2
    assert mailbox.take() == [
        mail(HEAD, "[ND73] Công việc mới: Tiếp nhận, xem xét phạm vi và tính chất – DX-11"),
        mail("mau.sxd.pgd1", "[ND73] Công việc mới: Cấp ủy cho ý kiến – DX-11")]
    clock.advance(hours=2)
    assert sender.send_mail() == 0 and mailbox.take() == []


def test_a_closed_port_is_retried_with_backoff_then_given_up(library, clock):
    port = free_port()                            # nothing listens there
    case = Case.start(library, "national", "proposal", PROPOSER)
    case.do("submit_plan", plan(), by=PROPOSER)
    sender = Scheduler(library, owner="s1", smtp=smtp_to(port),
                       outbox_leases=replace(OUTBOX_LEASES, max_attempts=3))
    for attempt in (1, 2, 3):
        assert sender.send_mail() == 0
        [row] = outbox(library)
        assert row.attempts == attempt and "cannot connect" in row.last_error
        clock.advance(hours=1)
    assert row.status == "failed"
    assert case.open_elements() == ["screening"]


def test_preferences_off_digest_and_immediate(library, clock, mailbox):
    notifications = library.notifications
    assert notifications.preference(HEAD) == "immediate"
    notifications.set_preference(HEAD, "off")
    notifications.set_preference("mau.sxd.pgd1", "digest")
    with pytest.raises(InvalidData) as refused:
        notifications.set_preference(HEAD, "weekly")
    assert refused.value.details["errors"][0]["field"] == "mode"
    assert notifications.preference(HEAD) == "off"

    clock.set(utc(2026, 1, 5, 1, 0))              # Monday 08:00 in Hà Nội
    first = Case.start(library, "national", "proposal", PROPOSER, business_key="DX-12")
    first.do("submit_plan", plan(), by=PROPOSER)
    first.do("screening", {**SCREENED, "is_complex": False}, by=HEAD)
    second = Case.start(library, "national", "proposal", PROPOSER, business_key="DX-13")
    second.do("submit_plan", plan(), by=PROPOSER)
    second.do("screening", {**SCREENED, "is_complex": False}, by=HEAD)
    assert notifications.unread_count(HEAD) == 2          # in the app: always
    assert notifications.unread_count("mau.sxd.pgd1") == 2
    assert outbox(library) == []                          # off and digest: nothing at once
    sender = scheduler(library, mailbox.port)
    assert sender.send_mail() == 1                        # today's digest hour has passed…
    assert mailbox.take() == [mail("mau.sxd.pgd1", "[ND73] 2 thông báo ngày 05/01/2026")]
    [(_, digest)] = mailbox.last                          # …so the digest goes now
    text = digest.get_body(("plain",)).get_content()
    assert "Cấp ủy cho ý kiến – DX-12" in text and "Cấp ủy cho ý kiến – DX-13" in text
    assert "05/01/2026 08:00" in text

    third = Case.start(library, "national", "proposal", PROPOSER, business_key="DX-14")
    third.do("submit_plan", plan(), by=PROPOSER)
    third.do("screening", {**SCREENED, "is_complex": False}, by=HEAD)
    clock.advance(hours=8)
    sender.send_mail()
    assert mailbox.take() == []                   # one digest a day
    clock.set(utc(2026, 1, 5, 23, 59))            # 06:59 the next day: not yet
    sender.send_mail()
    assert mailbox.take() == []
    clock.set(utc(2026, 1, 6, 0, 0))              # 07:00 (ND73_DIGEST_HOUR default)
    assert sender.send_mail() == 1
    assert mailbox.take() == [mail("mau.sxd.pgd1", "[ND73] 1 thông báo ngày 06/01/2026")]
    assert scheduler(library, mailbox.port, owner="s2").send_mail() == 0

    notifications.set_preference(HEAD, "immediate")
    fourth = Case.start(library, "national", "proposal", PROPOSER, business_key="DX-15")
    fourth.do("submit_plan", plan(), by=PROPOSER)
    assert sender.send_mail() == 1
    assert mailbox.take() == [mail(HEAD, "[ND73] Công việc mới: Tiếp nhận, xem xét phạm vi "
                                         "và tính chất – DX-15")]


def test_no_mail_without_an_smtp_host_but_messages_wait_in_the_outbox(library, mailbox):
    case = Case.start(library, "national", "proposal", PROPOSER)
    case.do("submit_plan", plan(), by=PROPOSER)
    assert Scheduler(library, owner="s1", smtp=None).send_mail() == 0
    assert [m.status for m in outbox(library)] == ["pending"]
    assert scheduler(library, mailbox.port, owner="s2").send_mail() == 1


def test_a_rolled_back_step_notifies_nobody(library):
    case = Case.start(library, "national", "proposal", PROPOSER)
    with pytest.raises(InvalidData):
        case.do("submit_plan", {"title": ""}, by=PROPOSER)
    assert library.notifications.unread_count(HEAD) == 0 and outbox(library) == []


def test_assigning_a_task_tells_the_new_assignee(library):
    case = Case.start(library, "national", "proposal", PROPOSER, business_key="DX-16")
    case.do("submit_plan", plan(), by=PROPOSER)
    [screening] = case.open("screening")
    library.tasks.assign(screening.id, "mau.sxd.pgd2", as_user(library, "admin"))
    [item] = library.notifications.list_for("mau.sxd.pgd2")
    assert (item["kind"], item["link"]) == ("task_assigned", f"/tasks/{screening.id}")
    assert item["title"].startswith("[ND73] Đồng chí được giao: Tiếp nhận")


def test_a_reporting_cycle_tells_each_reporting_unit(library, clock):
    clock.set(utc(2026, 11, 2, 1, 0))
    Case.start(library, "lao-cai", "annual_report", SCHEDULER,
               data={"proposer_unit": "laocai"})
    [item] = library.notifications.list_for("laocai.xa.congchuc")
    assert item["kind"] == "report_cycle_opened"
    # "trước ngày 30/11": by the end of the day before
    assert "Hạn nộp báo cáo: 29/11/2026 23:59." in item["body"]
    assert item["title"] == "[ND73] Kỳ báo cáo đã mở cho UBND phường Cam Đường"


def test_each_message_of_a_step_is_named_by_its_own_notification(library, clock):
    """A step that mails several people at once writes their messages in one statement
    (SQLite too); each notification names the message written for its own recipient."""
    from sqlalchemy import select, update

    from engine.store.models import Notification, OutboxMessage, User
    heads = ["laocai.xa.congchuc", "laocai.xa.chutich"]
    with library.db.transaction() as session:
        session.execute(update(User).where(User.username.in_(heads)).values(
            email=User.username + "@example.vn", notification_mode="immediate"))
    inserts = []

    def seen(_conn, _cursor, statement, _params, _context, _many):
        if "INTO outbox" in statement:
            inserts.append(statement)
    event.listen(library.db.engine, "before_cursor_execute", seen)
    try:
        clock.set(utc(2026, 11, 2, 1, 0))
        Case.start(library, "lao-cai", "annual_report", SCHEDULER,
                   data={"proposer_unit": "laocai"})
    finally:
        event.remove(library.db.engine, "before_cursor_execute", seen)
    with library.db.reading() as session:
        pairs = session.execute(
            select(Notification.username, OutboxMessage.username, OutboxMessage.recipient,
                   User.email)
            .join(OutboxMessage, OutboxMessage.id == Notification.outbox_id)
            .join(User, User.username == Notification.username)
            .where(Notification.kind == "report_cycle_opened")).all()
    mailed = {n for n, _, _, _ in pairs}
    assert len(mailed) >= 3 and set(heads) <= mailed
    assert all(n == o and r == e for n, o, r, e in pairs)
    assert len(inserts) == 1


@pytest.fixture
def processes(tmp_path):
    root = tmp_path / "processes"
    shutil.copytree(PROJECT / "processes" / "national", root / "national")
    province = root / "mien-nui"
    (province / "notifications").mkdir(parents=True)
    (province / "variant.toml").write_text('name = "mien-nui"\nextends = "national"\n',
                                           encoding="utf-8")
    return root


def test_a_variant_overrides_templates_file_by_file(engine, processes):
    folder = processes / "mien-nui"
    (folder / "notifications" / "task_available.subject.txt").write_text(
        "[Miền núi] Việc mới: {{ task.name }} (hạn {{ task.due_at | date }})", encoding="utf-8")
    (folder / "notifications" / "task_available.html").write_text(
        "<p>{{ data.note }}{{ user.full_name }}</p>", encoding="utf-8")
    (processes / "national" / "org.toml").rename(folder / "org.toml")
    engine.repository.deploy_folder(folder, "designer", forms_dir=PROJECT / "forms")
    seed_orgs(engine, processes)
    case = Case(engine, engine.runtime.start("mien-nui", "proposal",
                                             principal=as_user(engine, PROPOSER),
                                             business_key="MN-1"))
    case.do("submit_plan", plan(), by=PROPOSER)
    [item] = engine.notifications.list_for(HEAD)
    assert item["title"] == "[Miền núi] Việc mới: Tiếp nhận, xem xét phạm vi và tính chất " \
                            "(hạn 14/01/2026)"
    assert item["body"].startswith("Kính gửi")             # inherited from national
    [message] = engine.notifications.outbox(HEAD)
    assert message.html_body == "<p>Đỗ Thanh Mai</p>"


def test_template_problems_are_refused_at_deployment_with_file_and_line(engine, processes):
    folder = processes / "mien-nui"
    (folder / "notifications" / "reminder.txt").write_text(
        "Kính gửi {{ user.full_name }},\n\n{% if task.due_at %}Hạn: {{ task.due_at }\n",
        encoding="utf-8")
    (folder / "notifications" / "weekly.txt").write_text("x", encoding="utf-8")
    with pytest.raises(DefinitionInvalid) as refused:
        engine.repository.deploy_folder(folder, "designer", forms_dir=PROJECT / "forms")
    problems = {(p.file, p.line) for p in refused.value.problems}
    assert ("notifications/reminder.txt", 3) in problems
    assert ("notifications/weekly.txt", None) in problems
    assert engine.repository.count() == 0                  # nothing was deployed


def test_templates_share_parts_a_variant_overrides_file_by_file(engine, processes):
    """A kind's template includes a shared part (_<name>.txt / _<name>.html) of its own
    version; a province that overrides the part changes every kind that includes it."""
    folder = processes / "mien-nui"
    (folder / "notifications" / "_implementation_decision.txt").write_text(
        "Miền núi: đề xuất {{ outcome }}{% for r in reasons if r %}; lý do: {{ r }}{% endfor %}.",
        encoding="utf-8")
    engine.repository.deploy_folder(folder, "designer", forms_dir=PROJECT / "forms")
    [definition] = [d for d in engine.repository.latest_versions("mien-nui")
                    if d.key == "proposal"]
    templates = engine.notifications.templates_of(definition)
    assert "_implementation_decision.html" in templates          # inherited from national
    context = {"user": {"full_name": "Lê Văn A"}, "url": "http://x/instances/1",
               "instance": {"business_key": "MN-3"}, "documents": [],
               "data": {"suspension_reason": "Chờ kinh phí", "continue_reason": None}}
    subject, text, html = engine.notifications.renderer.render(
        definition.id, templates, "proposal_suspended", context)
    assert text == "Miền núi: đề xuất tạm dừng thực hiện; lý do: Chờ kinh phí.\n"
    assert subject == "[ND73] Đề xuất MN-3 tạm dừng thực hiện"
    assert "<h1 style=\"font-size:20px;margin:0 0 16px\">Đề xuất tạm dừng thực hiện</h1>" in html
    _, text, _ = engine.notifications.renderer.render(
        definition.id, templates, "proposal_resumed",
        {**context, "data": {"continue_reason": "Đã có kinh phí"}})
    assert text == "Miền núi: đề xuất được tiếp tục thực hiện; lý do: Đã có kinh phí.\n"


@pytest.mark.parametrize("include", [
    '{% include "../../x" %}', "{% include '/etc/passwd' %}",
    '{% include "notifications/_implementation_decision.txt" %}',
    '{% include "reminder.txt" %}',                  # a kind's template is no shared part
    '{% include "_no_such_part.txt" %}',
    '{% include data.part %}',                       # a name computed while rendering
    '{% extends "../x.html" %}', '{% import "../x.txt" as x %}',
])
def test_a_template_includes_only_its_own_shared_parts(engine, processes, include):
    folder = processes / "mien-nui"
    (folder / "notifications" / "reminder.txt").write_text(
        f"Kính gửi đồng chí {{{{ user.full_name }}}},\n\n{include}\n", encoding="utf-8")
    with pytest.raises(DefinitionInvalid) as refused:
        engine.repository.deploy_folder(folder, "designer", forms_dir=PROJECT / "forms")
    [problem] = refused.value.problems
    assert (problem.file, problem.code) == ("notifications/reminder.txt", "template.include")
    assert "includes only the shared parts of its own variant, by file name" in problem.message
    if "data.part" not in include:
        assert problem.line == 3 and repr(problem.params["name"]) in problem.message
    assert engine.repository.count() == 0                  # nothing was deployed


def test_a_template_past_the_checks_still_reaches_nothing_outside_its_version(tmp_path):
    """A stored template is read by its version's loader alone: a path names nothing, the
    template fails with a clear error, and the message falls back to the generic one."""
    (tmp_path / "secret.txt").write_text("bí mật", encoding="utf-8")
    templates = {"reminder.txt": '{% include "../secret.txt" %}{% include "' +
                                 str(tmp_path / "secret.txt") + '" %}',
                 "_part.txt": "phần chung"}
    loader = VersionLoader(templates)
    with pytest.raises(TemplateNotFound) as refused:
        loader.get_source(None, "../secret.txt")
    assert "includes only the shared parts of its own variant" in refused.value.message
    assert loader.get_source(None, "_part.txt")[0] == "phần chung"
    with pytest.raises(TemplateNotFound):
        loader.get_source(None, "reminder.txt")
    context = {"user": {"full_name": "Lê Văn A"}, "url": "http://x/tasks/1", "task": None,
               "instance": None, "data": {}, "title": "Nhắc hạn xử lý công việc"}
    _, text, _ = Renderer().render(7, templates, "reminder", context)
    assert text.startswith("Kính gửi đồng chí Lê Văn A,") and "bí mật" not in text


def test_templates_run_in_a_sandbox(engine, processes):
    folder = processes / "mien-nui"
    (folder / "notifications" / "task_available.subject.txt").write_text(
        "{{ user.__class__.__mro__ }}{{ ''.__class__.__subclasses__() }}", encoding="utf-8")
    (folder / "notifications" / "task_available.html").write_text(
        "<p>{{ instance.business_key }}</p>", encoding="utf-8")
    (processes / "national" / "org.toml").rename(folder / "org.toml")
    engine.repository.deploy_folder(folder, "designer", forms_dir=PROJECT / "forms")
    seed_orgs(engine, processes)
    case = Case(engine, engine.runtime.start("mien-nui", "proposal",
                                             principal=as_user(engine, PROPOSER),
                                             business_key="<b>MN-2</b>"))
    case.do("submit_plan", plan(), by=PROPOSER)
    [item] = engine.notifications.list_for(HEAD)
    assert item["title"] == "[ND73] Có công việc mới cần xử lý"   # the generic fallback
    [message] = engine.notifications.outbox(HEAD)
    assert message.html_body == "<p>&lt;b&gt;MN-2&lt;/b&gt;</p>"  # HTML is autoescaped


def test_the_html_part_is_rendered_only_for_an_e_mail_sent_at_once(engine, processes, caplog):
    """A notification sent as no e-mail of its own (in-app only, or in a later digest,
    which is made of the rows) does not render its HTML part, which nothing would read: a
    reporting cycle tells thousands of heads at once."""
    folder = processes / "mien-nui"
    # an HTML part that fails whenever it is rendered (the generic one replaces it, with
    # a warning naming it)
    (folder / "notifications" / "task_available.html").write_text(
        "<p>{{ 'x' * 1000000000 }}</p>", encoding="utf-8")
    (processes / "national" / "org.toml").rename(folder / "org.toml")
    engine.repository.deploy_folder(folder, "designer", forms_dir=PROJECT / "forms")
    seed_orgs(engine, processes)
    engine.notifications.set_preference(HEAD, "off")
    with caplog.at_level(logging.WARNING, logger="nd73.notifications"):
        case = Case(engine, engine.runtime.start("mien-nui", "proposal",
                                                 principal=as_user(engine, PROPOSER),
                                                 business_key="MN-3"))
        case.do("submit_plan", plan(), by=PROPOSER)
    [item] = engine.notifications.list_for(HEAD)             # in the app, as before
    assert item["kind"] == "task_available" and item["body"].startswith("Kính gửi")
    assert engine.notifications.outbox(HEAD) == []
    assert "task_available.html failed" not in caplog.text   # never rendered

    engine.notifications.set_preference(HEAD, "immediate")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="nd73.notifications"):
        other = Case(engine, engine.runtime.start("mien-nui", "proposal",
                                                  principal=as_user(engine, PROPOSER),
                                                  business_key="MN-4"))
        other.do("submit_plan", plan(), by=PROPOSER)
    [message] = engine.notifications.outbox(HEAD)            # an e-mail: its HTML rendered
    assert "task_available.html failed" in caplog.text
    assert message.html_body.startswith("<!DOCTYPE html>")   # the generic fallback



@pytest.mark.parametrize("costly", [
    "{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}{% endfor %}",
    "{% for i in range(100000) %}{{ 'y' * 90000 }}{% endfor %}",
    "{{ 'x' * 1000000000 }}",
    "{{ 2 ** 100000000 }}",
])
def test_a_costly_template_falls_back_to_the_generic_message(costly):
    # the title the BPMN declares with the notification (nd73:notification title=…)
    context = {"user": {"full_name": "Lê Văn A"}, "url": "http://x/tasks/1", "task": None,
               "instance": None, "data": {}, "title": "Nhắc hạn xử lý công việc"}
    subject, text, html = Renderer().render(1, {"reminder.subject.txt": costly,
                                                "reminder.txt": costly}, "reminder", context)
    assert subject == "[ND73] Nhắc hạn xử lý công việc"
    assert text.startswith("Kính gửi đồng chí Lê Văn A,") and "http://x/tasks/1" in text
    assert html.startswith("<!DOCTYPE html>") and "Lê Văn A" in html


class _TraceProbe:
    """A context value that notes, each time a template reads its ``name``, the trace
    function then installed."""

    def __init__(self):
        self.seen = []

    @property
    def name(self):
        self.seen.append(sys.gettrace())
        return "Báo cáo năm"


def _render_probed(text: str) -> tuple[str, list]:
    probe, before = _TraceProbe(), sys.gettrace()
    _, body, _ = Renderer().render(1, {"reminder.txt": text}, "reminder",
                                   {"user": {"full_name": "Lê Văn A"}, "url": "http://x",
                                    "task": probe, "instance": None})
    assert sys.gettrace() is before
    return body, [trace is not before for trace in probe.seen]


def test_a_template_of_substitutions_renders_without_the_cpu_trace():
    body, traced = _render_probed(
        "{{ task.name | upper }}{% if task.due_at %} hạn {{ task.due_at | date }}{% endif %}"
        " {{ user.full_name or 'đồng chí' }}")
    assert body == "BÁO CÁO NĂM Lê Văn A\n" and traced == [False]


def test_a_template_that_could_run_on_keeps_the_cpu_trace():
    body, traced = _render_probed("{% set n = task.name %}{{ n }}")
    assert body == "Báo cáo năm\n" and traced == [True]


def test_a_template_reads_jinja_s_globals_and_the_context_wins_over_them():
    text = ("{% set ns = namespace(n=0) %}{% for i in range(3) %}{% set ns.n = ns.n + i %}"
            "{% endfor %}{{ ns.n }} {{ joiner }}")
    _, body, _ = Renderer().render(1, {"reminder.txt": text}, "reminder",
                                   {"user": {"full_name": "A"}, "url": "http://x",
                                    "task": None, "instance": None, "joiner": "ours"})
    assert body == "3 ours\n"


def test_a_huge_loop_in_a_template_is_stopped_by_the_cpu_limit(caplog):
    loop = "{% for i in range(100000) %}{% for j in range(100000) %}" \
           "{% endfor %}{% endfor %}{{ task.name }}"
    with caplog.at_level(logging.WARNING, logger="nd73.notifications"):
        body, traced = _render_probed(loop)
    assert traced == []                       # never reached: the budget stopped it first
    assert body.startswith("Kính gửi đồng chí Lê Văn A,")      # the generic message
    assert "reminder.txt failed (TemplateTooCostly: the template ran longer than 0.5 s of " \
           "CPU)" in caplog.text


@pytest.mark.parametrize("text, simple", [
    ("Kính gửi {{ user.full_name }}, {{ data['so'] | default('-') }}", True),
    ("{% if a is defined and not b %}{{ a ~ ' ' ~ (c if d else e) }}{% endif %}", True),
    ("{% if a == 1 %}x{% elif a in b %}y{% else %}{{ a | e | trim }}{% endif %}", True),
    ("{% set x = 1 %}{{ x }}", False),
    ("{% for u in units %}{{ u }}{% endfor %}", False),
    ("{{ range(10) }}", False),
    ("{{ user.full_name.upper() }}", False),
    ("{{ 'x' * 3 }}", False),
    ("{{ 2 ** 3 }}", False),
    ("{{ units | join(', ') }}", False),
    ("{{ name | center(1000000) }}", False),
    ("{{ units[1:] }}", False),
    ("{% include '_part.txt' %}", False),
    ("{% filter upper %}x{% endfilter %}", False),
    ("{% macro m() %}{% endmacro %}", False),
    ("{{ a is divisibleby(3) }}", False),
])
def test_a_template_is_simple_by_its_parsed_nodes(text, simple):
    from jinja2.sandbox import SandboxedEnvironment
    assert is_simple(SandboxedEnvironment().parse(text)) is simple


def test_the_notifications_of_a_reporting_cycle_render_without_the_cpu_trace():
    """What each unit of a cycle is sent (and a task's usual notices): simple templates."""
    from jinja2.sandbox import SandboxedEnvironment
    folder = PROJECT / "processes" / "national" / "notifications"
    for kind in ("report_cycle_opened", "task_available", "task_assigned"):
        for part in ("subject.txt", "txt", "html"):
            text = (folder / f"{kind}.{part}").read_text(encoding="utf-8")
            assert is_simple(SandboxedEnvironment().parse(text)), f"{kind}.{part}"


def test_an_e_mail_refused_is_logged_with_the_round_the_message_and_its_recipient(
        library, mailbox):
    mailbox.refuse_with = "451 4.3.0 Thử lại sau"
    case = Case.start(library, "national", "proposal", PROPOSER)
    case.do("submit_plan", plan(), by=PROPOSER)
    [queued] = outbox(library)
    stream = io.StringIO()
    handler = json_handler(stream)
    logging.getLogger().addHandler(handler)
    try:
        assert scheduler(library, mailbox.port, owner="s7").send_mail() == 0
    finally:
        logging.getLogger().removeHandler(handler)
    [line] = [json.loads(text) for text in stream.getvalue().splitlines()
              if json.loads(text)["logger"] == "nd73.outbox"]
    assert line["level"] == "WARNING" and "451" in line["message"]
    # the scheduler's lines are named like a request's: its round, and the scheduler as user
    assert (line["request_id"], line["user"]) == ("s7/outbox/1", "scheduler")
    assert (line["message_id"], line["recipient_user"], line["kind"]) == \
        (queued.id, queued.username, queued.kind)
