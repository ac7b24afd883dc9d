"""Step 6: finance's mail - what needs doing, the issue, the files - sent at most once per version.

``SentMailLedger`` claims each version before the SMTP call: a process killed between the server's
250 and the record never mails finance twice; the next run names the interrupted send in its summary
for a person to check the mailbox.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
from collections.abc import Sequence
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY

from ps_integrations.domain.services_catalog import CatalogSyntaxError
from ps_integrations.domain.sku_reconciliation import GLOSSARY
from ps_integrations.exports import ExportFile
from ps_integrations.jobs.sku_reconciliation.files import attachable
from ps_integrations.jobs.sku_reconciliation.finance_issue import shown_status
from ps_integrations.jobs.sku_reconciliation.outcome import Outcome
from ps_integrations.jobs.sku_reconciliation.ports import Send, SentMail
from ps_integrations.jobs.sku_reconciliation.sources import CatalogSource
from ps_integrations.run_summary import RunSummary
from ps_integrations.stores.sent_mail import MailState

log = logging.getLogger(__name__)

MAIL_LIST_LIMIT = 200


def mail_version(outcome: Outcome, files: Sequence[ExportFile]) -> str:
    """What makes two finance mails of one ``as_of`` the same mail (a re-run sends none). Not the
    finance issue's URL: a run whose issue step failed (GitLab down, or a lost answer) mails without
    it, and the retry that finds the issue must not mail finance the same reconciliation again."""
    content = json.dumps(
        {
            "counts": outcome.counts,
            "files": [f.sha256 for f in files],
            "new": outcome.new,
            "resolved": outcome.resolved,
            "browse": outcome.browse_url,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(content.encode()).hexdigest()


def finance_mail(outcome: Outcome, files: Sequence[ExportFile], issue_url: str | None, recipients: str) -> EmailMessage:
    """Text and HTML: the SKUs needing action with the action, the issue, where the files are."""
    as_of, counts = outcome.as_of, outcome.counts
    action_rows = outcome.action_rows
    browse = outcome.browse_url
    shown = action_rows[:MAIL_LIST_LIMIT]
    more = len(action_rows) - len(shown)
    attached = attachable(files)
    attached_text = (
        f"The files are attached ({', '.join(f.name for f in attached)})"
        if attached
        else "The files are too large to attach"
    )
    where = (
        f"{attached_text} and stored as {outcome.folder}/ in the exports store"
        + (f": {browse}" if browse else "")
        + "."
    )
    issue_line = f"Finance issue: {issue_url}" if issue_url else "No finance issue is open: nothing needs action."
    if outcome.merge_request is not None:  # issue #19: the services.yml merge request
        request = outcome.merge_request
        issue_line += f"\n{request.message}" + (f": {request.url}" if request.url and request.open else "")
    text_lines = [
        f"SKU reconciliation as of {as_of.isoformat()}: {len(action_rows)} row(s) need action "
        f"({len(outcome.new)} new problem(s) since the previous run, {len(outcome.resolved)} resolved).",
        "Zuora is upstream: services.yml follows Zuora; a SKU missing in Zuora needs a finance SKU request.",
        "",
        *[f"- {row['sku'] or row['services_yml_id']} {row['currency']}: {shown_status(row)[1]}" for row in shown],
        *([f"- ... and {more} more in the attached workbook"] if more else []),
        "",
        *(
            ["services.yml ids used by more than one entry: " + "; ".join(outcome.duplicated_ids), ""]
            if outcome.duplicated_ids
            else []
        ),
        "Rows by status: " + ", ".join(f"{status} {count}" for status, count in counts.items() if count),
        "",
        issue_line,
        where,
    ]
    escape = html.escape
    items = "".join(
        f"<tr><td>{escape(row['sku'] or row['services_yml_id'])}</td><td>{escape(row['currency'])}</td>"
        f"<td>{escape(shown_status(row)[0])}</td><td>{escape(shown_status(row)[1])}</td></tr>"
        for row in shown
    )
    status_rows = "".join(
        f"<tr><td>{escape(status)}</td><td align='right'>{count}</td><td>{escape(GLOSSARY[status])}</td></tr>"
        for status, count in counts.items()
        if count
    )
    issue_html = (
        f"<p>Finance issue: <a href='{escape(issue_url, quote=True)}'>{escape(issue_url)}</a></p>"
        if issue_url
        else "<p>No finance issue is open: nothing needs action.</p>"
    )
    if outcome.merge_request is not None:
        request = outcome.merge_request
        link = request.url if request.url and request.open else ""
        issue_html += f"<p>{escape(request.message)}" + (
            f": <a href='{escape(link, quote=True)}'>{escape(link)}</a></p>" if link else "</p>"
        )
    browse_html = f": <a href='{escape(browse, quote=True)}'>{escape(browse)}</a>" if browse else ""
    body_html = (
        f"<p>SKU reconciliation as of <b>{as_of.isoformat()}</b>: <b>{len(action_rows)}</b> row(s) need action "
        f"({len(outcome.new)} new problem(s) since the previous run, {len(outcome.resolved)} resolved).</p>"
        "<p>Zuora is upstream: services.yml follows Zuora; a SKU missing in Zuora needs a finance SKU "
        "request.</p>"
        + (
            "<table border='1' cellpadding='4'><tr><th>SKU</th><th>Currency</th><th>Status</th><th>Action</th>"
            f"</tr>{items}</table>"
            if shown
            else ""
        )
        + (f"<p>... and {more} more in the attached workbook.</p>" if more else "")
        + (
            "<p>services.yml ids used by more than one entry: " + escape("; ".join(outcome.duplicated_ids)) + "</p>"
            if outcome.duplicated_ids
            else ""
        )
        + "<table border='1' cellpadding='4'><tr><th>Status</th><th>Rows</th><th>Meaning</th></tr>"
        + status_rows
        + "</table>"
        + issue_html
        + f"<p>{escape(attached_text)} and stored as "
        + f"{escape(outcome.folder)}/ in the exports store{browse_html}.</p>"
    )
    message = EmailMessage(policy=SMTP_POLICY)
    message["Subject"] = (
        f"[ps-integrations] SKU reconciliation {as_of.isoformat()}: {len(action_rows)} row(s) need action"
    )
    message["To"] = recipients
    message.set_content("\n".join(text_lines))
    message.add_alternative(body_html, subtype="html")
    for export in attached:
        maintype, subtype = (
            ("text", "csv")
            if export.name.endswith(".csv")
            else ("application", "vnd.openxmlformats-officedocument.spreadsheetml.sheet")
        )
        message.add_attachment(export.content, maintype=maintype, subtype=subtype, filename=export.name)
    return message


def cannot_reconcile_mail(
    as_of: str, source: CatalogSource, error: CatalogSyntaxError, recipients: str
) -> EmailMessage:
    where = f"{source.project}/{source.path} at {source.ref}" if source.project else source.source
    text = (
        f"The SKU reconciliation as of {as_of} could not run: services.yml ({where}) is not valid "
        f"YAML at line {error.line}, column {error.column}: {error.problem}.\n\n"
        "Nothing was reconciled and no export was written for this date. Once the file is fixed, the next "
        "run (or a manual re-run of this date) reconciles as usual."
    )
    message = EmailMessage(policy=SMTP_POLICY)
    message["Subject"] = (
        f"[ps-integrations] SKU reconciliation {as_of} could not run: services.yml line {error.line} is not valid YAML"
    )
    message["To"] = recipients
    message.set_content(text)
    message.add_alternative(
        "".join(f"<p>{html.escape(paragraph)}</p>" for paragraph in text.split("\n\n")), subtype="html"
    )
    return message


class FinanceMail:
    """Sends finance's mails through the sent-mail ledger and says in the summary what happened."""

    def __init__(self, ledger: SentMail, send: Send, recipients: str, summary: RunSummary) -> None:
        self.ledger, self.send, self.recipients, self.summary = ledger, send, recipients, summary

    def reconciled(self, outcome: Outcome, files: Sequence[ExportFile], issue_url: str | None) -> MailState:
        as_of = outcome.as_of.isoformat()
        state = self.ledger.send_once(
            f"mail:{as_of}",
            mail_version(outcome, files),
            lambda: self.send(finance_mail(outcome, files, issue_url, self.recipients)),
        )
        self._tell(state, f"finance mail of {as_of}")
        return state

    def cannot_reconcile(self, as_of: str, source: CatalogSource, error: CatalogSyntaxError) -> MailState | None:
        """Finance hears that nothing was reconciled, and why, once per as_of and error."""
        version = hashlib.sha256(f"{source.blob_id}:{error}".encode()).hexdigest()
        try:
            state = self.ledger.send_once(
                f"mail-error:{as_of}",
                version,
                lambda: self.send(cannot_reconcile_mail(as_of, source, error, self.recipients)),
            )
        except Exception:  # the run fails anyway on the syntax error; a mail problem must not hide it
            log.exception("Could not mail finance that the reconciliation could not run")
            return None
        self._tell(state, f"finance mail that {as_of} could not be reconciled")
        return state

    def _tell(self, state: MailState, what: str) -> None:
        if state is MailState.SENT:
            self.summary.add("mails sent", 1)
        elif state is MailState.ALREADY_SENT:
            self.summary.note(f"{what} already sent for this export")
        else:
            self.summary.add("mails interrupted", 1)
            self.summary.note(
                f"{what} INTERRUPTED: an earlier try was stopped during the SMTP send, so it may or may not "
                f"have arrived; not sent again - check the mailbox of {self.recipients}"
            )
            log.warning("%s: interrupted send found; not sent again", what)
