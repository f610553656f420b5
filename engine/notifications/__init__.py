"""Notifications: what officials are told in the app and by e-mail.

``templates`` renders a variant's message templates in a sandbox; ``service`` records
notifications (and outbox e-mails) inside the transaction of the event that caused them and
answers the notification centre; ``mailer`` builds and hands messages to SMTP; ``outbox``
is the scheduler's job that sends them.
"""
from .service import MODES, Notifications

__all__ = ["MODES", "Notifications"]
