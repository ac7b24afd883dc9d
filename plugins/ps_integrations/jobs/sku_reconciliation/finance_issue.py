"""Step 5: the one finance issue, kept current (opened, updated, closed when all is reconciled,
reopened when drift returns), found again by its stored iid or, after a crash, by label and marker."""

from __future__ import annotations

from typing import Any

from ps_integrations.domain.gitlab_text import one_line
from ps_integrations.domain.price_book import SALESFORCE_GLOSSARY, SALESFORCE_NO_ACTION
from ps_integrations.domain.sku_reconciliation import GLOSSARY, NO_ACTION, Row, money, needs_action
from ps_integrations.exceptions import GitLabApiError, GitLabNotFoundError
from ps_integrations.hooks.gitlab import GitLabIssue
from ps_integrations.jobs.sku_reconciliation.outcome import Outcome
from ps_integrations.jobs.sku_reconciliation.ports import IssueTracker, ReconciliationRecords
from ps_integrations.run_summary import RecordFailure, RunSummary

ISSUE_MARKER = "<!-- ps-integrations:sku-reconciliation -->"
ISSUE_LABELS = ("finance", "sku-reconciliation")
ISSUE_TABLE_LIMIT = 500  # rows in the issue; the rest are in the export (GitLab caps descriptions at 1 MB)

# --- GitLab Markdown -------------------------------------------------------------------------------

# What makes GitLab format, link, mention or reference text, or break a table cell. Plain numbers and
# SKUs ("GL-ENGR-12", "7000.00", "MIG+") and ids like "training_sessions_pm" stay as they are:
_ALWAYS = set("\\`*[]<>|{}")
# reference and mention sigils act only when text follows them directly (#1, @all, ~label, :emoji:)
_BEFORE_TEXT = set("@#!~%&$:^")


def table_cell(text: Any, limit: int = 300) -> str:
    """One GitLab Markdown table cell that shows the text as it is and does nothing else."""
    value = one_line("" if text is None else str(text), limit)
    out = []
    for position, char in enumerate(value):
        after = value[position + 1 : position + 2]
        before = value[position - 1 : position] if position else ""
        if (
            char in _ALWAYS
            or (char in _BEFORE_TEXT and after.strip())
            or (char == "_" and not (before.isalnum() and after.isalnum()))  # intraword _ never emphasises
        ):
            out.append("\\")
        out.append(char)
    return "".join(out) or " "


def issue_body(outcome: Outcome) -> str:
    as_of, counts, action_rows = outcome.as_of, outcome.counts, outcome.action_rows
    lines = [
        f"## SKU reconciliation as of {as_of.isoformat()}",
        "",
        "Zuora's product catalog does not match services.yml. This issue is kept current by the "
        "`ps_sku_reconciliation` job and closed when nothing needs action. Zuora is upstream: services.yml "
        "follows Zuora; a SKU missing in Zuora needs a finance SKU request.",
        "",
        "| Status | Rows | Meaning |",
        "|---|---:|---|",
        *[
            f"| {status} | {count} | {table_cell(GLOSSARY[status])} |"
            for status, count in counts.items()
            if count and status not in NO_ACTION
        ],
        "",
        f"New since the previous run: {len(outcome.new)}; resolved: {len(outcome.resolved)}.",
        "",
    ]
    if outcome.duplicated_ids:
        lines += [
            "**services.yml ids used by more than one entry:** "
            + "; ".join(table_cell(item) for item in outcome.duplicated_ids),
            "",
        ]
    lines += salesforce_lines(outcome)
    lines += [
        "| SKU | Currency | Status | Action | services.yml price | Zuora price | Difference "
        "| services.yml id | services.yml name | Zuora product id | Zuora name |",
        "|---|---|---|---|---:|---:|---:|---|---|---|---|",
    ]
    for row in action_rows[:ISSUE_TABLE_LIMIT]:
        status, action = shown_status(row)
        cells = [
            row["sku"],
            row["currency"],
            status,
            action,
            money(row["services_yml_price"]),
            money(row["zuora_price"]),
            money(row["difference"]),
            row["services_yml_id"],
            row["services_yml_name"],
            row["zuora_product_id"],
            row["zuora_name"],
        ]
        lines.append("| " + " | ".join(table_cell(cell) for cell in cells) + " |")
    if len(action_rows) > ISSUE_TABLE_LIMIT:
        lines += ["", f"... and {len(action_rows) - ISSUE_TABLE_LIMIT} more rows in the export."]
    browse = outcome.browse_url
    lines += [
        "",
        f"Export: `{outcome.folder}/` in the exports store (reconciliation.xlsx, reconciliation.csv)"
        + (f", open it at {browse}" if browse else "")
        + "; finance also gets both files by mail.",
        "",
        ISSUE_MARKER,
    ]
    return "\n".join(lines)


def shown_status(row: Row) -> tuple[str, str]:
    """The row's status and action: Zuora's or services.yml's when they need one, else Salesforce's."""
    if needs_action(row) or not getattr(row, "salesforce_status", ""):
        return row["status"], row["action"]
    return row["salesforce_status"], row["salesforce_action"]


def salesforce_lines(outcome: Outcome) -> list[str]:
    """The merge request, Salesforce's statuses and what services.yml cannot fix (issue #19)."""
    lines: list[str] = []
    request = outcome.merge_request
    if request is not None:
        where = f" ({request.url})" if request.url and request.open else ""
        lines += [f"**services.yml merge request:** {table_cell(request.message, 600)}{where}", ""]
    counts = {status: count for status, count in outcome.salesforce_counts.items() if count}
    if counts:
        lines += ["| Salesforce status | Rows | Meaning |", "|---|---:|---|"]
        lines += [
            f"| {status} | {count} | {table_cell(SALESFORCE_GLOSSARY[status])} |"
            for status, count in counts.items()
            if status not in SALESFORCE_NO_ACTION
        ]
        lines.append("")
    if outcome.finance_items:
        lines += [
            "### What services.yml cannot fix",
            "",
            "| SKU | Currency | Problem | Missing step of the SKU process | Action |",
            "|---|---|---|---|---|",
        ]
        lines += [
            "| "
            + " | ".join(
                table_cell(cell) for cell in (item.sku, item.currency, item.problem, item.step_text, item.action)
            )
            + " |"
            for item in outcome.finance_items[:ISSUE_TABLE_LIMIT]
        ]
        lines.append("")
    return lines


def issue_title(outcome: Outcome) -> str:
    systems = "Zuora, services.yml or Salesforce" if outcome.salesforce_counts else "Zuora or services.yml"
    return f"SKU reconciliation: {len(outcome.action_rows)} row(s) need action in {systems}"


class FinanceIssue:
    """The finance project's one SKU reconciliation issue."""

    def __init__(self, gitlab: IssueTracker, records: ReconciliationRecords, project: str, summary: RunSummary) -> None:
        self.gitlab, self.records, self.project, self.summary = gitlab, records, project, summary

    def keep_current(self, outcome: Outcome) -> str | None:
        """Open, update, close or reopen the issue; returns its URL while it is open.

        A GitLab error fails the run at the end, by name; the export and the mail still go out.
        """
        try:
            issue = self._find()
            if outcome.action_rows:
                return self._open_or_update(issue, outcome).web_url or None
            if issue is not None and issue.state != "closed":
                self._close(issue, outcome)
        except GitLabApiError as error:
            reason = f"HTTP {error.status} {error.endpoint}: {error.message}"
            self.summary.fail(RecordFailure("GitLab", f"finance issue in {self.project}", reason))
        return None

    def _find(self) -> GitLabIssue | None:
        iid = self.records.finance_issue_iid()
        if iid is not None:
            try:
                return self.gitlab.get_issue(self.project, iid)
            except GitLabNotFoundError:
                pass  # deleted or moved: look it up by its marker instead
        # also finds an issue whose creation was answered but not recorded (a crash in between)
        found = [
            issue
            for issue in self.gitlab.list_issues(self.project, state="all", labels=(ISSUE_LABELS[-1],))
            if ISSUE_MARKER in issue.description
        ]
        return min(found, key=lambda issue: issue.iid) if found else None

    def _open_or_update(self, issue: GitLabIssue | None, outcome: Outcome) -> GitLabIssue:
        body, title = issue_body(outcome), issue_title(outcome)
        if issue is None:
            issue = self.gitlab.create_issue(self.project, title, body, labels=ISSUE_LABELS)
            self.records.remember_finance_issue(issue.iid)
            self.summary.note(f"finance issue #{issue.iid} opened")
            return issue
        self.records.remember_finance_issue(issue.iid)
        reopened = issue.state == "closed"
        if not (reopened or issue.description != body or issue.title != title):
            self.summary.note(f"finance issue #{issue.iid} unchanged")
            return issue
        issue = self.gitlab.update_issue(
            self.project, issue.iid, title=title, description=body, state_event="reopen" if reopened else None
        )
        if reopened:  # after the reopen: a crash in between loses the note, never doubles it
            self.gitlab.create_note(
                self.project, issue.iid, f"Drift is back as of {outcome.as_of.isoformat()}: reopened."
            )
        self.summary.note(f"finance issue #{issue.iid} {'reopened' if reopened else 'updated'}")
        return issue

    def _close(self, issue: GitLabIssue, outcome: Outcome) -> None:
        self.gitlab.update_issue(self.project, issue.iid, state_event="close")
        # after the close: a crash in between loses the note, never doubles it
        self.gitlab.create_note(
            self.project, issue.iid, f"Everything is reconciled as of {outcome.as_of.isoformat()}. Closing."
        )
        self.summary.note(f"finance issue #{issue.iid} closed: all reconciled")
