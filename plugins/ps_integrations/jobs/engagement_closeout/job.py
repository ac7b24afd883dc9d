"""Engagement close-out (issue #22): closed engagement issues (GitLab) -> the cost-vs-actual analysis
(approved hours from the timesheet roll-up's exported data, budgets from Salesforce, cost rates from
include/ps_engagement_closeout/cost_rates.yml) -> a CSV and an HTML report in the exports store, the
report attached to the opportunity and one Chatter post mentioning finance, once per close. Open SOW
engagements get the highest progress milestone label reached; packaged ones complete/incomplete.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import replace
from decimal import Decimal
from functools import cached_property

from ps_integrations.domain.engagement_closeout import (
    Analysis,
    ApprovedTime,
    Budget,
    CostRates,
    InvalidEngagement,
    Problem,
    analyse,
    latest_per_timelog,
)
from ps_integrations.domain.engagements import closed_within
from ps_integrations.domain.opportunity_sync import SALESFORCE_ID, find_marker
from ps_integrations.domain.timesheets import RollupRules, round_hours
from ps_integrations.exceptions import GitLabNotFoundError, SalesforceApiError
from ps_integrations.hooks.gitlab import GitLabIssue
from ps_integrations.jobs.engagement_closeout.config import ClosedIssue, CloseoutConfig, Opportunity, closed_issue
from ps_integrations.jobs.engagement_closeout.filing import TAG, Filing
from ps_integrations.jobs.engagement_closeout.ports import (
    CloseoutStore,
    EngagementTracker,
    ExportFolders,
    OpportunityFiles,
)
from ps_integrations.jobs.engagement_closeout.progress import label_progress
from ps_integrations.jobs.engagement_closeout.report import analysis_files, report_templates
from ps_integrations.rules import load_cost_rates, load_rollup_rules
from ps_integrations.run_summary import RecordFailure, RunSummary
from ps_integrations.run_window import RunWindow
from ps_integrations.stores.engagement_closeout import CloseoutRecord

log = logging.getLogger(__name__)

ID_CHUNK = 200
INTERRUPTED = ("attaching", "attached", "posting")  # a filing that holds remote ids


class EngagementCloseout:
    def __init__(
        self,
        gitlab: EngagementTracker,
        salesforce: OpportunityFiles,
        ledger: CloseoutStore,
        exports: ExportFolders,
        config: CloseoutConfig,
        cost_rates: CostRates | None = None,
        rollup_rules: RollupRules | None = None,
    ) -> None:
        self.gitlab, self.salesforce, self.ledger, self.exports = gitlab, salesforce, ledger, exports
        self.config = config
        self.cost_rates = cost_rates or load_cost_rates()
        self.rules = rollup_rules or load_rollup_rules()
        self.templates = report_templates()
        self.filing = Filing(salesforce, ledger)
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

    # --- the run ---------------------------------------------------------------------------------
    def run(self, window: RunWindow | None, issue_iids: list[int]) -> RunSummary:
        closes = self.closes(window, issue_iids)
        self.summary.add("closes read", len(closes))
        if closes:
            opportunities = self.opportunities([find_marker(issue.description) or "" for issue in closes])
            mentions = self.mentions()
            for issue in closes:
                self.close_out(issue, opportunities, mentions)
        if self.config.progress_labels:
            label_progress(self.gitlab, self.ledger, self.opportunities, self.config, self.rules, self.summary)
        return self.summary

    # --- step 1: which closes --------------------------------------------------------------------
    def closes(self, window: RunWindow | None, issue_iids: list[int]) -> list[ClosedIssue]:
        """Closes in the window, the requested issues' current closes, and unfinished earlier ones."""
        found: dict[tuple[str, str], ClosedIssue] = {}
        for issue in self._closed_in(window) if window else []:
            if (closed := closed_issue(issue)) is not None:
                found[(closed.url, closed.closed_at)] = closed
        for closed in self._requested(issue_iids):
            found[(closed.url, closed.closed_at)] = closed
        for record in self.ledger.unfinished():
            if (record.engagement_url, record.closed_at) not in found and (closed := self._still_closed(record)):
                found[(closed.url, closed.closed_at)] = closed
        return sorted(found.values(), key=lambda issue: (issue.closed_at, issue.url))

    def _closed_in(self, window: RunWindow) -> list[GitLabIssue]:
        project = self.config.engagements_project
        candidates = self.gitlab.list_issues(
            project, state="closed", updated_after=window.start.isoformat(), order_by="updated_at"
        )
        return closed_within(candidates, window.start, window.end, self.config.all_engagement_types)

    def _requested(self, issue_iids: list[int]) -> list[ClosedIssue]:
        closes = []
        for iid in issue_iids:
            try:
                issue = self.gitlab.get_issue(self.config.engagements_project, int(iid))
            except GitLabNotFoundError:
                record = f"issue #{iid} of {self.config.engagements_project}"
                self.summary.fail(RecordFailure("GitLab", record, "not found", "iid"))
                continue
            closed = closed_issue(issue)
            if closed is None:
                self.summary.note(f"issue #{iid} is open: nothing to close out")
            else:
                closes.append(closed)
        return closes

    def _still_closed(self, record: CloseoutRecord) -> ClosedIssue | None:
        """An unfinished close, if its issue is still closed at that time; otherwise it is superseded."""
        try:
            closed = closed_issue(self.gitlab.get_issue(self.config.engagements_project, record.issue_iid))
        except GitLabNotFoundError:
            self.ledger.set_status(record.engagement_url, record.closed_at, "superseded", "the issue was deleted")
            return None
        if closed is not None and closed.closed_at == record.closed_at:
            return closed
        # reopened since: the next close is filed instead
        self.ledger.set_status(record.engagement_url, record.closed_at, "superseded", "the issue was reopened")
        return None

    # --- step 2: what Salesforce knows -----------------------------------------------------------
    def opportunities(self, ids: list[str]) -> dict[str, Opportunity]:
        """Opportunity Id (15 and 18 characters) -> name, account and budget, from Salesforce."""
        valid = sorted({oid for oid in ids if SALESFORCE_ID.match(oid)})
        columns = ["Id", "Name", "Amount", "Account.Name", self.config.budget_field]
        if self.config.currency_field:
            columns.append(self.config.currency_field)
        found: dict[str, Opportunity] = {}
        for offset in range(0, len(valid), ID_CHUNK):
            quoted = ", ".join(f"'{oid}'" for oid in valid[offset : offset + ID_CHUNK])
            soql = (
                f"SELECT {', '.join(columns)}, "  # noqa: S608 - ids checked, fields validated
                "(SELECT Quantity, Product2.ProductCode FROM OpportunityLineItems ORDER BY Id) "
                f"FROM Opportunity WHERE Id IN ({quoted})"
            )
            for record in self.salesforce.query_records(soql):
                opportunity = self._opportunity(record)
                found[opportunity.id] = found[opportunity.id[:15]] = opportunity
        return found

    def _opportunity(self, record: dict) -> Opportunity:
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
        budget = Budget(
            None if amount in (None, "") else Decimal(str(amount)), currency or self.cost_rates.currency, hours, source
        )
        account = str((record.get("Account") or {}).get("Name") or "")
        return Opportunity(record["Id"], str(record.get("Name") or ""), account, budget)

    def mentions(self) -> dict[str, str] | Problem:
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

    @cached_property
    def roles(self) -> dict[str, str]:
        """GitLab username -> role, from the group members' job titles."""
        members = self.gitlab.group_members_with_titles(self.config.group)
        return {member.user.username: role for member in members if (role := self.rules.role_of(member.job_title))}

    # --- step 3: one close -------------------------------------------------------------------------
    def close_out(
        self, issue: ClosedIssue, opportunities: dict[str, Opportunity], mentions: dict[str, str] | Problem
    ) -> None:
        """Analyse, export and file one close, unless it was filed (posted) before."""
        current = self.ledger.closeout_of(issue.url, issue.closed_at)
        if current is not None and current.status == "posted":
            self.summary.add("unchanged")
            return
        opportunity_id = find_marker(issue.description) or ""
        opportunity = opportunities.get(opportunity_id) or opportunities.get(opportunity_id[:15])
        problems: list[Problem] = []
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
                analysis = self.analyse(issue, opportunity)
            except InvalidEngagement as error:
                problems.extend(error.problems)
        if problems or analysis is None or opportunity is None or not isinstance(mentions, dict):
            self.fail(issue, opportunity_id, current, problems)
            return
        self.file(issue, opportunity, analysis, mentions, current)

    def file(
        self,
        issue: ClosedIssue,
        opportunity: Opportunity,
        analysis: Analysis,
        mentions: dict[str, str],
        current: CloseoutRecord | None,
    ) -> None:
        """The exports, then the report on the opportunity and the Chatter post."""
        reference = f"{self.config.engagements_project}#{issue.iid}"
        project_name = self.config.engagements_project.rsplit("/", 1)[-1]
        folder = f"engagement_closeout/{project_name}-{issue.iid}/{issue.closed_at.replace(':', '-')}"
        table, report = analysis_files(issue, opportunity, analysis, self.templates)
        self.exports.write_folder(folder, f"Cost-vs-actual analysis: {issue.title}", [table, report])
        previous = self.ledger.previous_filed(issue.url, issue.closed_at)
        record = CloseoutRecord(
            engagement_url=issue.url,
            closed_at=issue.closed_at,
            issue_iid=issue.iid,
            opportunity_id=opportunity.id,
            tag=TAG.format(reference=reference, closed_at=issue.closed_at),
            export_folder=folder,
            content_document_id=current.content_document_id if current else "",
            content_version_id=current.content_version_id if current else "",
            margin_pct="" if analysis.margin_pct is None else format(analysis.margin_pct, "f"),
            percent_complete="" if analysis.percent_complete is None else format(analysis.percent_complete, "f"),
        )
        try:
            record, follow_up = self.filing.attach(issue, opportunity, report, record, reference, previous)
            self.filing.post(issue, opportunity.id, analysis, record, mentions, previous, follow_up)
        except SalesforceApiError as error:
            self.ledger.save(replace(record, status="failed", reason=f"Salesforce {error.code}: {error.message}"))
            self.summary.fail(
                RecordFailure("Salesforce", f"engagement issue {issue.url}", f"{error.code}: {error.message}")
            )
            return
        self.summary.add("follow-ups" if follow_up else "filed")
        self.ledger.audit(
            issue.url, "filed", f"{record.tag} -> {opportunity.id} (document {record.content_document_id})"
        )

    def analyse(self, issue: ClosedIssue, opportunity: Opportunity) -> Analysis:
        hours: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
        for entry in self.ledger.approved_entries(issue.url):
            hours[(entry.engineer, entry.category)] += entry.hours
        approved = [
            ApprovedTime(engineer, self.roles.get(engineer, ""), category, value)
            for (engineer, category), value in sorted(hours.items())
        ]
        adjustments = latest_per_timelog(self.ledger.adjustments(issue.url))
        exported = sum(hours.values(), Decimal(0)) + sum((a.delta_hours for a in adjustments), Decimal(0))
        unapproved = max(round_hours(issue.logged_seconds) - exported, Decimal(0))
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
            self.roles,
            self.config.budget_field,
        )

    def fail(
        self, issue: ClosedIssue, opportunity_id: str, current: CloseoutRecord | None, problems: list[Problem]
    ) -> None:
        """Bad input, named by issue, field and system; an interrupted filing keeps its remote ids."""
        reasons = "; ".join(f"{p.system} {p.field}: {p.reason}" for p in problems)
        if current is not None and current.status in INTERRUPTED:
            self.ledger.set_status(issue.url, issue.closed_at, current.status, reasons)
        else:
            record = CloseoutRecord(issue.url, issue.closed_at, issue.iid, opportunity_id)
            self.ledger.save(replace(record, status="failed", reason=reasons))
        for problem in problems:
            self.summary.fail(
                RecordFailure(problem.system, f"engagement issue {issue.url}", problem.reason, problem.field)
            )
