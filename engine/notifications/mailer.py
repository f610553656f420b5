"""E-mail: SMTP settings, MIME messages with a plain-text and an HTML part, and a
connection that tells a refused message apart from one whose fate is unknown.

The settings come from ``ND73_SMTP_*`` (:attr:`engine.config.Settings.smtp`); without
``ND73_SMTP_HOST`` a process sends no e-mail (the outbox keeps the messages for a scheduler
that has it set).
"""
from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.header import Header
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, formataddr, make_msgid, parseaddr

TLS_MODES = ("none", "starttls", "ssl")
DEFAULT_PORTS = {"none": 25, "starttls": 587, "ssl": 465}
DEFAULT_SENDER = "ND73 Workflow <no-reply@nd73.local>"
TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int = 25
    tls: str = "none"
    user: str | None = None
    password: str | None = None
    sender: str = DEFAULT_SENDER


def build_message(settings: SmtpSettings, *, message_id: int, recipient: str,
                  recipient_name: str | None, subject: str, text: str, html: str,
                  created_at) -> MIMEMultipart:
    """multipart/alternative, plain text then HTML, UTF-8. Headers are encoded by the
    compat32 classes: the newer ones drop spaces when folding long Vietnamese subjects."""
    message = MIMEMultipart("alternative")
    sender_name, sender_address = parseaddr(settings.sender)
    message["From"] = formataddr((sender_name, sender_address), charset="utf-8")
    message["To"] = formataddr((recipient_name or "", recipient), charset="utf-8")
    message["Subject"] = Header(subject, "utf-8")  # type: ignore[assignment]  # compat32
    message["Date"] = format_datetime(created_at)
    domain = sender_address.rsplit("@", 1)[-1] or "nd73.local"
    # one outbox row, one Message-ID: mail systems can recognise a copy if one ever occurs
    message["Message-ID"] = make_msgid(idstring=f"outbox.{message_id}", domain=domain)
    message.attach(MIMEText(text, "plain", "utf-8"))
    message.attach(MIMEText(html, "html", "utf-8"))
    return message


class Refused(Exception):
    """The server did not take the message: it was not delivered and may be retried."""


class Unknown(Exception):
    """The connection broke while the message was being handed over: it may or may not
    have been delivered, so it must not be sent again."""


class SmtpConnection:
    """One SMTP session; :meth:`send` hands over one message in two steps so the caller can
    record "sending" between the envelope (refusable, safe to retry) and the content."""

    def __init__(self, settings: SmtpSettings):
        self.settings = settings
        self.smtp: smtplib.SMTP | None = None

    @property
    def _server(self) -> smtplib.SMTP:
        assert self.smtp is not None, "the connection is not open"
        return self.smtp

    def open(self) -> None:
        s = self.settings
        try:
            if s.tls == "ssl":
                self.smtp = smtplib.SMTP_SSL(s.host, s.port, timeout=TIMEOUT_SECONDS,
                                             context=ssl.create_default_context())
            else:
                self.smtp = smtplib.SMTP(s.host, s.port, timeout=TIMEOUT_SECONDS)
                if s.tls == "starttls":
                    self.smtp.starttls(context=ssl.create_default_context())
            self.smtp.ehlo_or_helo_if_needed()
            if s.user:
                self.smtp.login(s.user, s.password or "")
        except (OSError, smtplib.SMTPException) as exc:
            self.close()
            raise Refused(f"cannot connect to {s.host}:{s.port}: {exc}") from None

    def envelope(self, message: MIMEMultipart) -> None:
        """MAIL FROM and RCPT TO; a refusal raises :class:`Refused` (nothing delivered)."""
        try:
            sender = parseaddr(str(message["From"]))[1]
            recipient = parseaddr(str(message["To"]))[1]
            code, reply = self._server.mail(sender)
            if code != 250:
                raise Refused(f"MAIL FROM refused: {code} {reply.decode(errors='replace')}")
            code, reply = self._server.rcpt(recipient)
            if code not in (250, 251):
                raise Refused(f"RCPT TO refused: {code} {reply.decode(errors='replace')}")
        except Refused:
            self._reset()
            raise
        except (OSError, smtplib.SMTPException) as exc:
            self.close()
            raise Refused(f"SMTP envelope failed: {exc}") from None

    def content(self, message: MIMEMultipart) -> None:
        """DATA: a reply with an error code raises :class:`Refused`; a broken connection
        raises :class:`Unknown`."""
        try:
            # SMTP lines end in CRLF; smtplib does not convert the LFs of bytes itself
            wire = message.as_bytes(policy=message.policy.clone(linesep="\r\n"))
            code, reply = self._server.data(wire)
            if code != 250:       # smtplib raises only for the reply to DATA itself
                raise smtplib.SMTPDataError(code, reply)
        except smtplib.SMTPDataError as exc:
            self._reset()
            answer = exc.smtp_error
            if isinstance(answer, bytes):
                answer = answer.decode(errors="replace")
            raise Refused(f"DATA refused: {exc.smtp_code} {answer}") from None
        except (OSError, smtplib.SMTPException) as exc:
            self.close()
            raise Unknown(f"connection lost while sending: {exc}") from None

    def _reset(self) -> None:
        try:
            self._server.rset()
        except (OSError, smtplib.SMTPException):
            self.close()

    @property
    def is_open(self) -> bool:
        return self.smtp is not None

    def close(self) -> None:
        if self.smtp is not None:
            try:
                self.smtp.quit()
            except (OSError, smtplib.SMTPException):
                pass
            self.smtp = None
