"""Mail through the SMTP provider's connection ``smtp_default`` (one place for the jobs' notices)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

SMTP_CONN_ID = "smtp_default"


def send_html_mail(
    to: str | Sequence[str], subject: str, html: str, files: Sequence[str] | None = None, **extra: Any
) -> None:
    """Send one HTML mail; ``files`` are local paths attached as they are."""
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    with SmtpHook(smtp_conn_id=SMTP_CONN_ID) as smtp:
        smtp.send_email_smtp(to=to, subject=subject, html_content=html, files=list(files or []), **extra)
