"""Mail through the SMTP provider's connection ``smtp_default`` (one place for the jobs' notices)."""

from __future__ import annotations

from collections.abc import Sequence
from email.message import EmailMessage
from typing import Any

SMTP_CONN_ID = "smtp_default"


def send_html_mail(
    to: str | Sequence[str], subject: str, html: str, files: Sequence[str] | None = None, **extra: Any
) -> None:
    """Send one HTML mail; ``files`` are local paths attached as they are."""
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    with SmtpHook(smtp_conn_id=SMTP_CONN_ID) as smtp:
        smtp.send_email_smtp(to=to, subject=subject, html_content=html, files=list(files or []), **extra)


def send_message(message: EmailMessage) -> None:
    """Send a fully built message (own MIME structure and headers, e.g. text + HTML alternatives).

    The provider hook builds only HTML messages, so this uses the client it logged in with.
    """
    from email.utils import getaddresses, parseaddr

    from airflow.providers.smtp.hooks.smtp import SmtpHook

    recipients = [address for _name, address in getaddresses(message.get_all("To", []) + message.get_all("Cc", []))]
    with SmtpHook(smtp_conn_id=SMTP_CONN_ID) as smtp:
        sender = parseaddr(str(message["From"] or ""))[1] or smtp.from_email
        if not message["From"]:
            message["From"] = str(sender)
        client = smtp._smtp_client
        if client is None:
            raise RuntimeError("SMTP connection did not open")
        client.sendmail(str(sender), recipients, message.as_bytes())
