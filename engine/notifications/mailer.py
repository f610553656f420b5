"""E-mail: SMTP settings from the environment, MIME messages with a plain-text and an HTML
part, and a connection that tells a refused message apart from one whose fate is unknown.

``ND73_SMTP_HOST`` unset means this process sends no e-mail (the outbox keeps the messages
for a scheduler that has it set).
"""
from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.header import Header
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, formataddr, make_msgid, parseaddr
from typing import Mapping

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

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "SmtpSettings | None":
        host = env.get("ND73_SMTP_HOST", "").strip()
        if not host:
            return None
        tls = env.get("ND73_SMTP_TLS", "none").strip() or "none"
        if tls not in TLS_MODES:
            raise ValueError(f"ND73_SMTP_TLS: '{tls}' must be one of {', '.join(TLS_MODES)}")
        try:
            port = int(env.get("ND73_SMTP_PORT") or DEFAULT_PORTS[tls])
        except ValueError:
            raise ValueError(f"ND73_SMTP_PORT: '{env['ND73_SMTP_PORT']}' is not a port "
                             "number") from None
        return cls(host=host, port=port, tls=tls, user=env.get("ND73_SMTP_USER") or None,
                   password=env.get("ND73_SMTP_PASSWORD") or None,
                   sender=env.get("ND73_SMTP_SENDER") or DEFAULT_SENDER)


def check_environment(env: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """(problems, notes) of the e-mail settings, for ``nd73 check-config``."""
    problems, notes = [], []
    tls = env.get("ND73_SMTP_TLS", "none")
    if tls not in TLS_MODES:
        problems.append(f"ND73_SMTP_TLS: '{tls}' must be one of {', '.join(TLS_MODES)}")
    sender = env.get("ND73_SMTP_SENDER")
    if sender is not None and "@" not in sender:
        problems.append(f"ND73_SMTP_SENDER: '{sender}' is not an e-mail address "
                        "(e.g. ND73 <no-reply@tinh.gov.vn>)")
    if bool(env.get("ND73_SMTP_USER")) != bool(env.get("ND73_SMTP_PASSWORD")):
        problems.append("ND73_SMTP_USER and ND73_SMTP_PASSWORD: set both or neither")
    url = env.get("ND73_PUBLIC_URL")
    if url is not None and not url.startswith(("http://", "https://")):
        problems.append(f"ND73_PUBLIC_URL: '{url}' must start with http:// or https://")
    if not env.get("ND73_SMTP_HOST"):
        notes.append("ND73_SMTP_HOST unset: this process sends no e-mail (messages wait in "
                     "the outbox for a scheduler that has it)")
    else:
        notes.append(f"e-mail through {env['ND73_SMTP_HOST']} ({tls})")
    return problems, notes


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
