"""Engagement close-out (issue #22): closed engagement issues (GitLab) -> the cost-vs-actual analysis
(approved hours from the timesheet roll-up's exported data, budgets from Salesforce, cost rates from
include/ps_engagement_closeout/cost_rates.yml) -> a CSV and an HTML report in the exports store, the
report attached to the opportunity and one Chatter post mentioning finance, once per close. Open SOW
engagements get the highest progress milestone label reached; packaged ones complete/incomplete.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from ps_integrations import clock
from ps_integrations.domain.engagement_closeout import (
    Adjustment,
    Analysis,
    ApprovedTime,
    Budget,
    CostRates,
    InvalidEngagement,
    Problem,
    analyse,
    milestone_reached,
    progress_label_change,
    round_money,
    round_pct,
)
from ps_integrations.domain.opportunity_sync import SALESFORCE_ID, find_marker
from ps_integrations.domain.timesheets import RollupRules, round_hours
from ps_integrations.exports import Column, ExportFile, csv_file
from ps_integrations.paths import INCLUDE_DIR
from ps_integrations.run_summary import RecordFailure, RunSummary

log = logging.getLogger(__name__)

JOB = "ps_engagement_closeout"
COST_RATES_FILE = INCLUDE_DIR / "ps_engagement_closeout" / "cost_rates.yml"
ROLLUP_RULES_FILE = INCLUDE_DIR / "ps_timesheet_rollup" / "rules.yml"  # read only
SOQL_FIELD = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
TAG = "[ps-integrations close-out {reference} closed {closed_at}]"
TAG_PREFIX = "[ps-integrations close-out {reference} "
MAX_POST_NOTES = 2000


@dataclass(frozen=True)
class CloseoutConfig:
    engagements_project: str = "professional-services/engagements"
    group: str = "professional-services"
    controller: str = ""  # Salesforce username or e-mail of the Controller
    finance_business_partner: str = ""  # ... of the Finance Business Partner (Sales)
    budget_field: str = "Budgeted_Hours__c"
    currency_field: str = "CurrencyIsoCode"  # "" for a single-currency org (the cost rates' currency)
    progress_labels: bool = True
    progress_label_prefix: str = "progress::"
    milestones: tuple[int, ...] = (25, 50, 75, 100)
    sow_types: tuple[str, ...] = ("Custom SOW",)
    # issues of the project carrying one of these labels are engagements (others, e.g. CSAT follow-ups, are not)
    engagement_types: tuple[str, ...] = (
        "Implementation",
        "Migration",
        "Training",
        "Embedded Engineer",
        "Consulting",
        "Health Check",
        "Integration",
        "Custom SOW",
    )
    packaged_complete_label: str = "progress::complete"
    packaged_incomplete_label: str = "progress::incomplete"

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> CloseoutConfig:
        from ps_integrations.settings import settings_from_mapping

        config = settings_from_mapping(cls, data, "ps_engagement_closeout_config")
        for name in ("budget_field", "currency_field"):
            value = getattr(config, name)
            if (value or name == "budget_field") and not SOQL_FIELD.match(value):
                raise ValueError(f"ps_engagement_closeout_config: {name} {value!r} is not a Salesforce field name")
        if not config.milestones or any(not 0 < int(m) <= 100 for m in config.milestones):
            raise ValueError("ps_engagement_closeout_config: milestones must be percentages in (0, 100]")
        if not config.progress_label_prefix.endswith("::"):
            raise ValueError("ps_engagement_closeout_config: progress_label_prefix must end in '::' (a scope)")
        return config

    @property
    def progress_scope(self) -> str:
        return self.progress_label_prefix[:-2]

    def is_engagement(self, labels: Any) -> bool:
        return any(label in self.engagement_types or label in self.sow_types for label in labels)


@dataclass(frozen=True)
class ClosedIssue:
    url: str
    iid: int
    title: str
    closed_at: str  # ISO 8601 UTC, seconds
    description: str
    labels: tuple[str, ...]
    logged_seconds: int

    @property
    def account(self) -> str:
        return self.title.split(":", 1)[0].strip() if ":" in self.title else ""


@dataclass(frozen=True)
class Opportunity:
    id: str
    name: str
    account: str
    budget: Budget


def load_rules(
    cost_rates_file: Path | None = None, rollup_rules_file: Path | None = None
) -> tuple[CostRates, RollupRules]:
    """The cost rates (this job's file) and the roll-up's rules (read only: roles, rate card, SKU hours)."""
    import yaml

    cost_path, rollup_path = cost_rates_file or COST_RATES_FILE, rollup_rules_file or ROLLUP_RULES_FILE
    cost = CostRates.from_mapping(yaml.safe_load(cost_path.read_text(encoding="utf-8")) or {})
    rollup = RollupRules.from_mapping(yaml.safe_load(rollup_path.read_text(encoding="utf-8")) or {})
    return cost, rollup


def report_templates() -> Any:
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    return Environment(
        loader=FileSystemLoader(str(INCLUDE_DIR / "ps_engagement_closeout")),
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
        keep_trailing_newline=True,
    )


def _iso(value: Any) -> str:
    moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def raw(value: Decimal | None) -> Decimal | None:
    """An unrounded value without the noise of Decimal's working precision (68.1500 -> 68.15)."""
    if value is None:
        return None
    normal = value.normalize()
    return normal.quantize(Decimal(1)) if normal == normal.to_integral_value() else normal


def _text(value: Decimal | None, money: bool = False) -> str:
    if value is None:
        return "-"
    return f"{round_money(value):,.2f}" if money else format(value, "f")


# --- the export ---------------------------------------------------------------------------------------
ANALYSIS_COLUMNS = (
    Column("row", "line (approved hours of one role and category) or total (the engagement)"),
    Column("engagement", "Engagement issue URL"),
    Column("closed_at", "When the engagement issue was closed (UTC)"),
    Column("opportunity_id", "Salesforce opportunity Id"),
    Column("account", "Customer account"),
    Column("billing", "fixed_price (SOW amount) or time_and_materials (hours x bill rate)"),
    Column("currency", "ISO 4217 currency of every amount in the row"),
    Column("role", "Role (from the engineer's GitLab job title); empty on the total row"),
    Column("category", "Time category; 'Adjustment after lock' for changes to exported periods"),
    Column("hours", "Approved hours"),
    Column("cost_rate", "Hourly cost of the role"),
    Column("cost", "hours x cost_rate, unrounded"),
    Column("cost_rounded", "cost rounded to cents, half up"),
    Column("bill_rate", "Hourly bill rate of the role (time and materials only)"),
    Column("revenue", "Revenue: the SOW amount (fixed price) or hours x bill_rate, unrounded"),
    Column("revenue_rounded", "revenue rounded to cents"),
    Column("budgeted_hours", "Budgeted hours (total row)"),
    Column("hours_source", "opportunity (the budget field) or sku_table (quantity x hours per SKU)"),
    Column("percent_complete", "Approved hours / budgeted hours x 100, unrounded (may exceed 100)"),
    Column("percent_complete_rounded", "percent_complete to one decimal"),
    Column("margin", "revenue - cost, unrounded"),
    Column("margin_rounded", "margin rounded to cents"),
    Column("margin_pct", "margin / revenue x 100, unrounded"),
    Column("margin_pct_rounded", "margin_pct to one decimal"),
    Column("target_margin_pct", "Gross margin target, percent"),
    Column("unapproved_hours", "Hours logged on the issue but not exported (approved) yet; not costed"),
    Column("notes", "Overrun, below target, unapproved time, adjustments after lock (total row)"),
)


def analysis_files(
    issue: ClosedIssue, opportunity: Opportunity, analysis: Analysis, templates: Any
) -> tuple[ExportFile, ExportFile]:
    """``analysis.csv`` (raw and rounded values) and ``report.html``; same inputs, same bytes."""
    base = {
        "engagement": issue.url,
        "closed_at": issue.closed_at,
        "opportunity_id": opportunity.id,
        "account": opportunity.account,
        "billing": analysis.billing,
        "currency": analysis.currency,
    }
    rows = [
        {
            **base,
            "row": "line",
            "role": line.role,
            "category": line.category,
            "hours": raw(line.hours),
            "cost_rate": raw(line.cost_rate),
            "cost": raw(line.cost),
            "cost_rounded": line.cost_rounded,
            "bill_rate": raw(line.bill_rate),
            "revenue": raw(line.revenue),
            "revenue_rounded": None if line.revenue is None else round_money(line.revenue),
        }
        for line in analysis.lines
    ]
    rows.append(
        {
            **base,
            "row": "total",
            "hours": raw(analysis.approved_hours),
            "cost": raw(analysis.cost),
            "cost_rounded": analysis.cost_rounded,
            "revenue": raw(analysis.revenue),
            "revenue_rounded": None if analysis.revenue is None else round_money(analysis.revenue),
            "budgeted_hours": raw(analysis.budgeted_hours),
            "hours_source": analysis.hours_source,
            "percent_complete": raw(analysis.percent_complete),
            "percent_complete_rounded": analysis.percent_complete_rounded,
            "margin": raw(analysis.margin),
            "margin_rounded": None if analysis.margin is None else round_money(analysis.margin),
            "margin_pct": raw(analysis.margin_pct),
            "margin_pct_rounded": analysis.margin_pct_rounded,
            "target_margin_pct": raw(analysis.target_margin_pct),
            "unapproved_hours": raw(analysis.unapproved_hours),
            "notes": "; ".join(analysis.notes),
        }
    )
    table = csv_file(
        "analysis.csv",
        "The cost-vs-actual analysis: one row per role and category, then the total.",
        ANALYSIS_COLUMNS,
        rows,
    )
    percent = analysis.percent_complete_rounded
    html = templates.get_template("report.html.j2").render(
        title=issue.title,
        account=opportunity.account,
        opportunity_id=opportunity.id,
        closed_at=issue.closed_at,
        engagement_url=issue.url,
        billing=analysis.billing.replace("_", " "),
        currency=analysis.currency,
        revenue=_text(analysis.revenue, money=True),
        cost=_text(analysis.cost, money=True),
        margin=_text(analysis.margin, money=True),
        margin_pct="-" if analysis.margin_pct_rounded is None else f"{analysis.margin_pct_rounded}%",
        below_target=analysis.below_target,
        target_pct=round_pct(analysis.target_margin_pct),
        budgeted_hours=_text(analysis.budgeted_hours),
        hours_source=analysis.hours_source.replace("_", " "),
        approved_hours=_text(analysis.approved_hours),
        percent_complete="-" if percent is None else f"{percent}%",
        unapproved_hours=_text(analysis.unapproved_hours),
        lines=[
            {
                "role": line.role,
                "category": line.category,
                "hours": _text(line.hours),
                "cost_rate": _text(line.cost_rate, money=True),
                "cost": _text(line.cost, money=True),
                "bill_rate": _text(line.bill_rate, money=True),
                "revenue": _text(line.revenue, money=True),
            }
            for line in analysis.lines
        ],
        notes=list(analysis.notes),
    )
    report = ExportFile("report.html", html.encode("utf-8"), "The readable report (attached to the opportunity).")
    return table, report


# --- the job ------------------------------------------------------------------------------------------
class EngagementCloseout:
    def __init__(
        self,
        gitlab: Any,
        salesforce: Any,
        store: Any,
        exports: Any,
        config: CloseoutConfig,
        run_id: str,
        cost_rates: CostRates | None = None,
        rollup_rules: RollupRules | None = None,
    ) -> None:
        self.gitlab, self.salesforce, self.store, self.exports = gitlab, salesforce, store, exports
        self.config, self.run_id = config, run_id
        if cost_rates is None or rollup_rules is None:
            cost_rates, rollup_rules = load_rules()
        self.cost_rates, self.rules = cost_rates, rollup_rules
        self.templates = report_templates()
        self.summary = RunSummary(
            counts={
                "closes read": 0,
                "filed": 0,
                "follow-ups": 0,
                "unchanged": 0,
                "labels set": 0,
                "not labelled": 0,
                "failed": 0,
            }
        )
        self._project: Any = None
        self._roles: dict[str, str] | None = None

    @property
    def project(self) -> Any:
        if self._project is None:
            self._project = self.gitlab.client.projects.get(self.config.engagements_project)
        return self._project

    # --- the run ---------------------------------------------------------------------------------
    def run(self, start: datetime | None, end: datetime | None, issue_iids: list[int]) -> RunSummary:
        closes = self._closes(start, end, issue_iids)
        self.summary.add("closes read", len(closes))
        if closes:
            opportunities = self._opportunities([find_marker(issue.description) or "" for issue in closes])
            mentions = self._mentions()
            for issue in closes:
                self._close_out(issue, opportunities, mentions)
        if self.config.progress_labels:
            self._progress_labels()
        return self.summary

    def _closes(self, start: datetime | None, end: datetime | None, issue_iids: list[int]) -> list[ClosedIssue]:
        """Closes in the window, the requested issues' current closes, and unfinished earlier ones."""
        from gitlab.exceptions import GitlabGetError

        found: dict[tuple[str, str], ClosedIssue] = {}
        if start is not None and end is not None:
            for issue in self.project.issues.list(
                state="closed", updated_after=start.isoformat(), per_page=100, iterator=True, order_by="updated_at"
            ):
                closed = self._closed_issue(issue) if self.config.is_engagement(issue.labels) else None
                if closed and start <= datetime.fromisoformat(closed.closed_at.replace("Z", "+00:00")) < end:
                    found[(closed.url, closed.closed_at)] = closed
        for iid in issue_iids:
            try:
                issue = self.project.issues.get(int(iid))
            except GitlabGetError as error:
                if error.response_code != 404:
                    raise
                self.summary.fail(
                    RecordFailure("GitLab", f"issue #{iid} of {self.config.engagements_project}", "not found", "iid")
                )
                continue
            closed = self._closed_issue(issue)
            if closed is None:
                self.summary.note(f"issue #{iid} is open: nothing to close out")
            else:
                found[(closed.url, closed.closed_at)] = closed
        for row in self.store.fetch_all("engagement_closeout/unfinished"):
            if (row["engagement_url"], row["closed_at"]) in found:
                continue
            try:
                closed = self._closed_issue(self.project.issues.get(int(row["issue_iid"])))
            except GitlabGetError as error:
                if error.response_code != 404:
                    raise
                self._set_status(row["engagement_url"], row["closed_at"], "superseded", "the issue was deleted")
                continue
            if closed is not None and closed.closed_at == row["closed_at"]:
                found[(closed.url, closed.closed_at)] = closed
            else:  # reopened since: the next close is filed instead
                self._set_status(row["engagement_url"], row["closed_at"], "superseded", "the issue was reopened")
        return sorted(found.values(), key=lambda issue: (issue.closed_at, issue.url))

    @staticmethod
    def _closed_issue(issue: Any) -> ClosedIssue | None:
        if issue.state != "closed" or not issue.closed_at:
            return None
        stats = issue.attributes.get("time_stats") or issue.time_stats()
        return ClosedIssue(
            issue.web_url,
            int(issue.iid),
            str(issue.title).replace("\u200b", ""),
            _iso(issue.closed_at),
            str(issue.description or ""),
            tuple(issue.labels),
            int(stats.get("total_time_spent") or 0),
        )

    def _opportunities(self, ids: list[str]) -> dict[str, Opportunity]:
        """Opportunity Id (15 and 18 characters) -> name, account and budget, from Salesforce."""
        valid = sorted({oid for oid in ids if SALESFORCE_ID.match(oid)})
        columns = ["Id", "Name", "Amount", "Account.Name", self.config.budget_field]
        if self.config.currency_field:
            columns.append(self.config.currency_field)
        found: dict[str, Opportunity] = {}
        for offset in range(0, len(valid), 200):
            quoted = ", ".join(f"'{oid}'" for oid in valid[offset : offset + 200])
            soql = (
                f"SELECT {', '.join(columns)}, "  # noqa: S608 - ids checked, fields validated
                "(SELECT Quantity, Product2.ProductCode FROM OpportunityLineItems ORDER BY Id) "
                f"FROM Opportunity WHERE Id IN ({quoted})"
            )
            for record in self.salesforce.query_records(soql):
                items = (record.get("OpportunityLineItems") or {}).get("records") or []
                hours_value = record.get(self.config.budget_field)
                hours: Decimal | None
                if hours_value not in (None, ""):
                    hours, source = Decimal(str(hours_value)), "opportunity"
                else:
                    hours = self.rules.budget_from_skus(
                        ((item.get("Product2") or {}).get("ProductCode"), Decimal(str(item.get("Quantity") or 0)))
                        for item in items
                    )
                    source = "sku_table" if hours is not None else ""
                amount = record.get("Amount")
                currency = str(record.get(self.config.currency_field) or "") if self.config.currency_field else ""
                opportunity = Opportunity(
                    record["Id"],
                    str(record.get("Name") or ""),
                    str((record.get("Account") or {}).get("Name") or ""),
                    Budget(
                        None if amount in (None, "") else Decimal(str(amount)),
                        currency or self.cost_rates.currency,
                        hours,
                        source,
                    ),
                )
                found[record["Id"]] = found[record["Id"][:15]] = opportunity
        return found

    def _mentions(self) -> dict[str, str] | Problem:
        """Configured role -> Salesforce user id, or the problem that stops every post."""
        wanted = {
            "controller": self.config.controller,
            "finance_business_partner": self.config.finance_business_partner,
        }
        missing = [name for name, value in wanted.items() if not value.strip()]
        if missing:
            return Problem("Airflow", f"ps_engagement_closeout_config.{missing[0]}", "not set: who to mention")
        users = self.salesforce.find_users(list(wanted.values()))
        resolved = {}
        for name, identifier in wanted.items():
            user = users.get(identifier.strip().lower())
            if user is None or not user.get("IsActive"):
                state = "not found" if user is None else "inactive"
                return Problem("Salesforce", f"User {identifier} ({name})", f"{state}: cannot be mentioned")
            resolved[name] = str(user["Id"])
        return resolved

    def _roles_of(self) -> dict[str, str]:
        if self._roles is None:
            members = self.gitlab.client.groups.get(self.config.group).members_all.list(get_all=True)
            self._roles = {
                m.username: role for m in members if (role := self.rules.role_of(getattr(m, "job_title", "")))
            }
        return self._roles

    # --- one close ---------------------------------------------------------------------------------
    def _close_out(
        self, issue: ClosedIssue, opportunities: dict[str, Opportunity], mentions: dict[str, str] | Problem
    ) -> None:
        key = {"engagement_url": issue.url, "closed_at": issue.closed_at}
        row = self.store.fetch_one("engagement_closeout/closeout_of", key) or {}
        if row.get("status") == "posted":
            self.summary.add("unchanged")
            return
        opportunity_id = find_marker(issue.description) or ""
        problems: list[Problem] = []
        opportunity = opportunities.get(opportunity_id) or opportunities.get(opportunity_id[:15])
        if not opportunity_id:
            problems.append(Problem("GitLab", "description", "no opportunity link (the opportunity sync's marker)"))
        elif opportunity is None:
            problems.append(
                Problem("Salesforce", f"Opportunity {opportunity_id}", "not found (deleted or not visible)")
            )
        if isinstance(mentions, Problem):
            problems.append(mentions)
        analysis = None
        if opportunity is not None:
            try:
                analysis = self._analyse(issue, opportunity)
            except InvalidEngagement as error:
                problems.extend(error.problems)
        if problems or analysis is None or opportunity is None or not isinstance(mentions, dict):
            self._fail(issue, opportunity_id, problems)
            return

        reference = f"{self.config.engagements_project}#{issue.iid}"
        tag = TAG.format(reference=reference, closed_at=issue.closed_at)
        project_name = self.config.engagements_project.rsplit("/", 1)[-1]
        folder = f"engagement_closeout/{project_name}-{issue.iid}/{issue.closed_at.replace(':', '-')}"
        table, report = analysis_files(issue, opportunity, analysis, self.templates)
        self.exports.write_folder(folder, f"Cost-vs-actual analysis: {issue.title}", [table, report])
        previous = self.store.fetch_one("engagement_closeout/previous_filed", key)
        record = {
            **key,
            "issue_iid": issue.iid,
            "opportunity_id": opportunity.id,
            "reason": "",
            "tag": tag,
            "export_folder": folder,
            "content_document_id": row.get("content_document_id") or "",
            "content_version_id": row.get("content_version_id") or "",
            "feed_element_id": "",
            "margin_pct": "" if analysis.margin_pct is None else format(analysis.margin_pct, "f"),
            "percent_complete": "" if analysis.percent_complete is None else format(analysis.percent_complete, "f"),
            "run_id": self.run_id,
        }
        from ps_integrations.exceptions import SalesforceApiError

        try:
            document_id, follow_up = self._attach(issue, opportunity, report, tag, reference, previous, record)
            self._post(issue, opportunity, analysis, tag, mentions, previous, follow_up, record)
        except SalesforceApiError as error:
            self._save(record, "failed", f"Salesforce {error.code}: {error.message}")
            self.summary.fail(
                RecordFailure("Salesforce", f"engagement issue {issue.url}", f"{error.code}: {error.message}")
            )
            return
        self.summary.add("follow-ups" if follow_up else "filed")
        self._audit(issue.url, "filed", f"{tag} -> {opportunity.id} (document {document_id})")

    def _analyse(self, issue: ClosedIssue, opportunity: Opportunity) -> Analysis:
        roles = self._roles_of()
        hours: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
        for entry in self.store.fetch_all("engagement_closeout/approved_entries", {"engagement": issue.url}):
            hours[(entry["engineer"], entry["category"])] += Decimal(str(entry["hours"]))
        approved = [
            ApprovedTime(engineer, roles.get(engineer, ""), category, value)
            for (engineer, category), value in sorted(hours.items())
        ]
        adjustments = self._adjustments(issue.url)
        exported = sum(hours.values(), Decimal(0)) + sum((a.delta_hours for a in adjustments), Decimal(0))
        logged = round_hours(issue.logged_seconds)
        unapproved = max(logged - exported, Decimal(0))
        time_and_materials = any(label in self.rules.time_and_materials_types for label in issue.labels)
        return analyse(
            issue.url,
            opportunity.budget,
            approved,
            adjustments,
            unapproved,
            self.cost_rates,
            time_and_materials,
            self.rules.rates,
            roles,
            self.config.budget_field,
        )

    def _adjustments(self, engagement: str) -> list[Adjustment]:
        """The roll-up's adjustments of the engagement's exported timelogs; the latest per timelog wins."""
        latest: dict[tuple[str, str], Adjustment] = {}
        for row in self.store.fetch_all("engagement_closeout/adjustments", {"engagement": engagement}):
            original = Decimal(row["original_hours"] or 0)
            new = Decimal(row["new_hours"] or 0)
            delta = -original if row["change"] == "removed" else new - original
            latest[(row["period"], row["timelog_id"])] = Adjustment(
                row["period"], row["timelog_id"], row["engineer"], row["change"], delta
            )
        return [latest[key] for key in sorted(latest)]

    def _attach(
        self,
        issue: ClosedIssue,
        opportunity: Opportunity,
        report: ExportFile,
        tag: str,
        reference: str,
        previous: dict[str, Any] | None,
        record: dict[str, Any],
    ) -> tuple[str, bool]:
        """The report as a file on the opportunity: a new document at the first close, a new version
        of it after a reopen. Looked up by its tag (the version's Description) before uploading, so a
        crash between upload and record never uploads twice.

        :return: the document id, and whether an earlier close of the engagement was filed before.
        """
        prefix = TAG_PREFIX.format(reference=reference)
        document_id = str((previous or {}).get("content_document_id") or "")
        if not document_id:  # the state store may not know (first close, or its record was lost)
            mine = [
                version
                for version in self.salesforce.content_versions(location_id=opportunity.id)
                if str(version.get("Description") or "").startswith(prefix)
            ]
            document_id = str(mine[0]["ContentDocumentId"]) if mine else ""
        versions = self.salesforce.content_versions(document_id=document_id) if document_id else []
        follow_up = previous is not None or any(
            str(v.get("Description") or "").startswith(prefix) and v.get("Description") != tag for v in versions
        )
        done = next((version for version in versions if version.get("Description") == tag), None)
        if done is None:
            self._save(record, "attaching")
            version_id = self.salesforce.create_content_version(
                f"Cost-vs-actual {issue.title}"[:255],
                f"closeout-{issue.iid}.html",
                report.content,
                first_publish_location_id=None if document_id else opportunity.id,
                content_document_id=document_id or None,
                description=tag,
                reason_for_change=f"engagement closed again {issue.closed_at}" if document_id else None,
            )
            if not document_id:
                document_id = str(self.salesforce.get_record("ContentVersion", version_id)["ContentDocumentId"])
        else:
            version_id = str(done["Id"])
        record.update(content_document_id=document_id, content_version_id=version_id)
        self._save(record, "attached")
        return document_id, follow_up

    def _post(
        self,
        issue: ClosedIssue,
        opportunity: Opportunity,
        analysis: Analysis,
        tag: str,
        mentions: dict[str, str],
        previous: dict[str, Any] | None,
        follow_up: bool,
        record: dict[str, Any],
    ) -> None:
        """One Chatter post per close, looked up by its tag in the opportunity's feed before posting."""
        existing = next(
            (
                element
                for element in self.salesforce.record_feed(opportunity.id)
                if tag in str((element.get("body") or {}).get("text") or "")
            ),
            None,
        )
        if existing is None:
            self._save(record, "posting")
            segments = post_segments(issue, analysis, tag, mentions, previous, follow_up)
            existing = self.salesforce.post_feed_item(opportunity.id, segments)
        record["feed_element_id"] = str(existing["id"])
        self._save(record, "posted")

    def _fail(self, issue: ClosedIssue, opportunity_id: str, problems: list[Problem]) -> None:
        reasons = "; ".join(f"{p.system} {p.field}: {p.reason}" for p in problems)
        record = {
            "engagement_url": issue.url,
            "closed_at": issue.closed_at,
            "issue_iid": issue.iid,
            "opportunity_id": opportunity_id,
            "tag": "",
            "export_folder": "",
            "content_document_id": "",
            "content_version_id": "",
            "feed_element_id": "",
            "margin_pct": "",
            "percent_complete": "",
            "run_id": self.run_id,
        }
        existing = self.store.fetch_one("engagement_closeout/closeout_of", record) or {}
        if existing.get("status") in ("attaching", "attached", "posting"):
            # keep the remote ids of an interrupted filing; only the reason changes
            self._set_status(issue.url, issue.closed_at, existing["status"], reasons)
        else:
            self._save(record, "failed", reasons)
        for problem in problems:
            self.summary.fail(
                RecordFailure(problem.system, f"engagement issue {issue.url}", problem.reason, problem.field)
            )

    def _save(self, record: dict[str, Any], status: str, reason: str = "") -> None:
        self.store.execute(
            "engagement_closeout/save", {**record, "status": status, "reason": reason, "updated_at": clock.now_iso()}
        )

    def _set_status(self, url: str, closed_at: str, status: str, reason: str) -> None:
        self.store.execute(
            "engagement_closeout/set_status",
            {
                "engagement_url": url,
                "closed_at": closed_at,
                "status": status,
                "reason": reason,
                "run_id": self.run_id,
                "updated_at": clock.now_iso(),
            },
        )

    # --- progress labels ---------------------------------------------------------------------------
    def _progress_labels(self) -> None:
        """The highest milestone reached on open SOW engagements, complete/incomplete on packaged ones;
        time and materials get none. Only labels of the progress scope are touched, only when they change."""
        config = self.config
        open_issues = [
            issue
            for issue in self.project.issues.list(state="opened", per_page=100, iterator=True)
            if self.config.is_engagement(issue.labels)
            and not any(label in self.rules.time_and_materials_types for label in issue.labels)
        ]
        if not open_issues:
            return
        opportunities = self._opportunities([find_marker(issue.description) or "" for issue in open_issues])
        totals = {
            row["engagement"]: Decimal(str(row["hours"]))
            for row in self.store.fetch_all("engagement_closeout/approved_totals")
        }
        for adjustment_row in self._all_adjustments():
            totals[adjustment_row[0]] = totals.get(adjustment_row[0], Decimal(0)) + adjustment_row[1]
        for issue in open_issues:
            opportunity_id = find_marker(issue.description) or ""
            opportunity = opportunities.get(opportunity_id) or opportunities.get(opportunity_id[:15])
            # Not run failures: the roll-up already lists these in its findings, and failing every hour for a
            # sales data gap would page on-call hourly. A close of such an engagement does fail (it cannot be filed).
            if not opportunity_id:
                self._unlabelled(issue.web_url, "GitLab description: no opportunity link")
                continue
            if opportunity is None or opportunity.budget.hours is None:
                self._unlabelled(
                    issue.web_url,
                    f"Salesforce Opportunity.{config.budget_field}: empty and no SKU of the deal has hours",
                )
                continue
            approved = totals.get(issue.web_url, Decimal(0))
            if any(label in config.sow_types for label in issue.labels):
                milestone = milestone_reached(approved, opportunity.budget.hours, config.milestones)
                wanted = None if milestone is None else f"{config.progress_label_prefix}{milestone}"
            else:
                done = opportunity.budget.hours > 0 and approved >= opportunity.budget.hours
                wanted = config.packaged_complete_label if done else config.packaged_incomplete_label
            change = progress_label_change(issue.labels, wanted, config.progress_scope)
            if change.empty:
                continue
            update: dict[str, str] = {}
            if change.add:
                update["add_labels"] = ",".join(change.add)
            if change.remove:
                update["remove_labels"] = ",".join(change.remove)
            self.project.issues.update(issue.iid, update)
            self.summary.add("labels set")
            self._audit(
                issue.web_url, "progress label", f"{wanted or 'none'} ({approved} of {opportunity.budget.hours} h)"
            )

    def _unlabelled(self, url: str, why: str) -> None:
        self.summary.add("not labelled")
        self.summary.note(f"no progress label for {url} ({why})")

    def _all_adjustments(self) -> list[tuple[str, Decimal]]:
        latest: dict[tuple[str, str], tuple[str, Decimal]] = {}
        for row in self.store.fetch_all("engagement_closeout/adjustments", {"engagement": ""}):
            original = Decimal(row["original_hours"] or 0)
            new = Decimal(row["new_hours"] or 0)
            delta = -original if row["change"] == "removed" else new - original
            latest[(row["period"], row["timelog_id"])] = (row["engagement"], delta)
        return list(latest.values())

    def _audit(self, record_id: str, action: str, detail: str) -> None:
        self.store.execute(
            "platform/record_audit",
            {
                "dag_id": JOB,
                "run_id": self.run_id,
                "record_id": record_id,
                "action": action,
                "detail": detail,
                "recorded_at": clock.now_iso(),
            },
        )


def post_segments(
    issue: ClosedIssue,
    analysis: Analysis,
    tag: str,
    mentions: dict[str, str],
    previous: dict[str, Any] | None,
    follow_up: bool,
) -> list[dict[str, str]]:
    """The Chatter post: a summary (or, after a reopen, a short update), the two mentions and the tag."""
    margin = "-" if analysis.margin_pct_rounded is None else f"{analysis.margin_pct_rounded}%"
    percent = "-" if analysis.percent_complete_rounded is None else f"{analysis.percent_complete_rounded}%"
    target = f"{round_pct(analysis.target_margin_pct)}%"
    if follow_up:
        was = ""
        if previous and previous.get("margin_pct"):
            was = f" (was {round_pct(Decimal(previous['margin_pct']))}%)"
        text = (
            f"Updated cost-vs-actual analysis for {issue.title}: the engagement was reopened and closed again "
            f"on {issue.closed_at[:10]}. Gross margin now {margin}{was}, {percent} complete. "
            f"The new report version is attached. Engagement issue: {issue.url} "
        )
    else:
        verdict = "below" if analysis.below_target else "meets"
        text = (
            f"Cost-vs-actual analysis for {issue.title} (engagement closed {issue.closed_at[:10]}): "
            f"gross margin {margin}, {verdict} the {target} target; {percent} complete "
            f"({_text(analysis.approved_hours)} of {_text(analysis.budgeted_hours)} budgeted hours). "
            f"Cost {_text(analysis.cost, money=True)} {analysis.currency} against revenue "
            f"{_text(analysis.revenue, money=True)} {analysis.currency}. The report is attached. "
            f"Engagement issue: {issue.url} "
        )
        if analysis.notes:
            notes = "; ".join(analysis.notes)
            if len(notes) > MAX_POST_NOTES:  # Chatter bodies hold 10,000 characters; the report has them all
                notes = notes[: MAX_POST_NOTES - 30].rsplit(" ", 1)[0] + " ... (see the report)"
            text += f"Notes: {notes}. "
    return [
        {"type": "Text", "text": text + "cc "},
        {"type": "Mention", "id": mentions["controller"]},
        {"type": "Text", "text": " "},
        {"type": "Mention", "id": mentions["finance_business_partner"]},
        {"type": "Text", "text": f" {tag}"},
    ]
