"""The finance mail of the roll-up: one mail per run listing the exports that landed, each export
version mailed at most once - also when the process is killed between the SMTP server's 250 and the
record (``SentMailLedger``: such a mail is not resent; the run names it for a person to check)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from ps_integrations.jobs.timesheets.ports import MailOnce, MailSender
from ps_integrations.paths import INCLUDE_DIR
from ps_integrations.run_summary import RunSummary
from ps_integrations.stores.sent_mail import MailState


@dataclass(frozen=True)
class Landed:
    """An export written this run."""

    folder: str
    paths: list[str]
    manifest_sha256: str
    rows: dict[str, int]
    adjustments: int

    @property
    def location(self) -> str:
        return self.paths[0].rsplit("/", 1)[0]


@cache
def _template() -> Any:
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    environment = Environment(
        loader=FileSystemLoader(str(INCLUDE_DIR / "ps_timesheet_rollup")),
        autoescape=select_autoescape(enabled_extensions=("html.j2",)),
    )
    return environment.get_template("finance_mail.html.j2")


def finance_mail_html(news: Sequence[Landed]) -> str:
    exports = [
        {
            "folder": item.folder,
            "hour_rows": item.rows.get("approved_hours.csv", 0),
            "engineer_rows": item.rows.get("utilization.csv", 0),
            "adjustments": item.adjustments,
            "location": item.location,
        }
        for item in news
    ]
    return str(_template().render(exports=exports, adjustments=sum(item.adjustments for item in news)))


def mail_finance(
    landed: Sequence[Landed], recipients: str, mails: MailOnce, send: MailSender, summary: RunSummary
) -> None:
    """One mail listing the exports whose version finance was not mailed about yet."""
    if not recipients:
        summary.note("no finance_recipients configured: no mail sent")
        return
    news = []
    for item in landed:
        state = mails.state(f"mail:{item.folder}", item.manifest_sha256)
        if state is MailState.INTERRUPTED:
            summary.note(
                f"finance mail about {item.folder} interrupted during an earlier send (maybe delivered, "
                "not resent): check the finance mailbox"
            )
        elif state is None:
            news.append(item)
    if not news:
        summary.note("finance already mailed about these exports")
        return
    periods = ", ".join(item.folder.rsplit("/", 1)[-1] for item in news)
    html = finance_mail_html(news)

    def smtp() -> None:
        send(recipients, f"[ps-integrations] Approved PS hours: {periods}", html)

    # every export of the mail claimed before the one SMTP call, marked sent after it
    action: Callable[[], None] = smtp
    for item in reversed(news):
        action = _claimed(mails, item, action)
    action()
    summary.add("mails sent")


def _claimed(mails: MailOnce, item: Landed, inner: Callable[[], None]) -> Callable[[], None]:
    def claim() -> None:
        mails.send_once(f"mail:{item.folder}", item.manifest_sha256, inner)

    return claim
