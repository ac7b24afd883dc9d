"""Progress labels on open engagements: the highest milestone reached on SOW engagements,
complete/incomplete on packaged ones, none on time and materials. Only labels of the progress scope
change, and only when the milestone moves."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from ps_integrations.domain.engagement_closeout import latest_per_timelog, milestone_reached, progress_label_change
from ps_integrations.domain.opportunity_sync import find_marker
from ps_integrations.domain.timesheets import RollupRules
from ps_integrations.hooks.gitlab import GitLabIssue
from ps_integrations.jobs.engagement_closeout.config import CloseoutConfig, Opportunity
from ps_integrations.jobs.engagement_closeout.ports import CloseoutStore, EngagementTracker
from ps_integrations.run_summary import RunSummary

OpportunityLookup = Callable[[list[str]], dict[str, Opportunity]]


def approved_hours(ledger: CloseoutStore) -> dict[str, Decimal]:
    """Approved hours per engagement issue URL: exported, plus the latest adjustment of each timelog."""
    totals = dict(ledger.approved_totals())
    for adjustment in latest_per_timelog(ledger.adjustments()):
        totals[adjustment.engagement] = totals.get(adjustment.engagement, Decimal(0)) + adjustment.delta_hours
    return totals


def wanted_label(issue: GitLabIssue, approved: Decimal, budget_hours: Decimal, config: CloseoutConfig) -> str | None:
    if any(label in config.sow_types for label in issue.labels):
        milestone = milestone_reached(approved, budget_hours, config.milestones)
        return None if milestone is None else f"{config.progress_label_prefix}{milestone}"
    done = budget_hours > 0 and approved >= budget_hours
    return config.packaged_complete_label if done else config.packaged_incomplete_label


def label_progress(
    gitlab: EngagementTracker,
    ledger: CloseoutStore,
    lookup: OpportunityLookup,
    config: CloseoutConfig,
    rules: RollupRules,
    summary: RunSummary,
) -> None:
    """Set the progress label of every open engagement whose milestone moved."""
    open_issues = [
        issue
        for issue in gitlab.list_issues(config.engagements_project, state="opened")
        if config.is_engagement(issue.labels)
        and not any(label in rules.time_and_materials_types for label in issue.labels)
    ]
    if not open_issues:
        return
    opportunities = lookup([find_marker(issue.description) or "" for issue in open_issues])
    totals = approved_hours(ledger)
    for issue in open_issues:
        opportunity_id = find_marker(issue.description) or ""
        opportunity = opportunities.get(opportunity_id) or opportunities.get(opportunity_id[:15])
        # Not run failures: the roll-up already lists these in its findings, and failing every hour for a
        # sales data gap would page on-call hourly. A close of such an engagement does fail (it cannot be filed).
        if not opportunity_id:
            _unlabelled(summary, issue.web_url, "GitLab description: no opportunity link")
            continue
        if opportunity is None or opportunity.budget.hours is None:
            _unlabelled(
                summary,
                issue.web_url,
                f"Salesforce Opportunity.{config.budget_field}: empty and no SKU of the deal has hours",
            )
            continue
        approved = totals.get(issue.web_url, Decimal(0))
        wanted = wanted_label(issue, approved, opportunity.budget.hours, config)
        change = progress_label_change(issue.labels, wanted, config.progress_scope)
        if change.empty:
            continue
        gitlab.update_issue(
            config.engagements_project, issue.iid, add_labels=tuple(change.add), remove_labels=tuple(change.remove)
        )
        summary.add("labels set")
        ledger.audit(
            issue.web_url, "progress label", f"{wanted or 'none'} ({approved} of {opportunity.budget.hours} h)"
        )


def _unlabelled(summary: RunSummary, url: str, why: str) -> None:
    summary.add("not labelled")
    summary.note(f"no progress label for {url} ({why})")
