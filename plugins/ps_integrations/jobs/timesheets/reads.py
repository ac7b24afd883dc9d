"""The roll-up's reads: what the GitLab instance offers, timelogs per period, GitLab's figures per
period, the group's people, approval issues, engagements and their budgets. Each is one named step
over the hooks' typed methods; numbers and decisions come from ``domain/``."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta

from ps_integrations.domain.opportunity_sync import SALESFORCE_ID, find_marker
from ps_integrations.domain.timesheet_approvals import ApprovalIssue, ApprovalLabels
from ps_integrations.domain.timesheet_certification import find_certification
from ps_integrations.domain.timesheet_entries import TimelogFinding, to_entries
from ps_integrations.domain.timesheet_export import Budget, EngagementInfo, engagement_budget
from ps_integrations.domain.timesheets import Entry, Period, RollupRules, contiguous_ranges, group_by_period
from ps_integrations.hooks.gitlab import GitLabMember, GitLabTimelog
from ps_integrations.jobs.timesheets.config import RollupConfig
from ps_integrations.jobs.timesheets.ports import BudgetSource, TimeTracking


@dataclass(frozen=True)
class GitLabCapabilities:
    """What the GitLab instance offers for categorising time (issue #20). Parent work items
    (``WorkItemWidgetHierarchy.parent``) replace ``Issue.epic``, which GitLab is retiring and Free/CE
    never had (asking for it there fails the whole query); labels and the mapping work everywhere."""

    issue_epic: bool
    work_item_parent: bool = False

    def describe(self) -> str:
        parent = "the issue's parent work item, " if self.work_item_parent else ""
        if self.issue_epic:
            source = "the issue's parent work item (its epic)" if self.work_item_parent else "the issue's epic"
            return f"GitLab has epics: categories from {source}, labels and the configured mapping"
        return f"GitLab without epics (Free/CE): categories from {parent}labels and the configured mapping"


def gitlab_capabilities(gitlab: TimeTracking) -> GitLabCapabilities:
    """Introspection (it works on every edition): ``Issue.epic`` and ``WorkItemWidgetHierarchy.parent``."""
    return GitLabCapabilities(
        issue_epic="epic" in gitlab.type_fields("Issue"),
        work_item_parent="parent" in gitlab.type_fields("WorkItemWidgetHierarchy"),
    )


def query_range(start: date, end: date) -> tuple[str, str]:
    """The GraphQL date range for timelogs dated start..end in the business time zone: widened by a
    day each side so dates near midnight are not lost; callers keep what falls in their period."""
    return (start - timedelta(days=1)).isoformat(), (end + timedelta(days=1)).isoformat()


@dataclass
class TimeRead:
    """Unrounded entries and findings per period key, and what reading them cost."""

    entries: dict[str, list[Entry]] = field(default_factory=lambda: defaultdict(list))
    findings: dict[str, list[TimelogFinding]] = field(default_factory=lambda: defaultdict(list))
    pages: int = 0
    duplicates: int = 0
    undated: list[GitLabTimelog] = field(default_factory=list)  # no spentAt: in no period, named by the run


def read_time(
    gitlab: TimeTracking, config: RollupConfig, periods: Iterable[Period], today: date, capabilities: GitLabCapabilities
) -> TimeRead:
    """The group's timelogs of the periods (adjacent periods read in one range), as entries."""
    read = TimeRead()
    group = gitlab.group_gid(config.group)
    ask_epic = capabilities.issue_epic and not capabilities.work_item_parent
    for first, last in contiguous_ranges(periods):
        listing = gitlab.list_timelogs(group, *query_range(first, last), with_epic=ask_epic)
        read.pages += listing.pages
        read.duplicates += listing.duplicates
        timelogs = listing.timelogs
        if not all(timelog.spent_at for timelog in timelogs):
            read.undated.extend(timelog for timelog in timelogs if not timelog.spent_at)
            timelogs = [timelog for timelog in timelogs if timelog.spent_at]
        parents: dict[int, str] = {}
        if capabilities.work_item_parent:
            internal = {t.issue_id for t in timelogs if t.issue_id and t.project != config.engagements_project}
            parents = gitlab.work_item_parents(sorted(internal))
        entries, findings = to_entries(
            timelogs,
            config.business_timezone,
            config.engagements_project,
            first,
            last,
            today,
            config.categories,
            config.gitlab_server_timezone,
            parents,
        )
        for period, grouped in group_by_period(entries, config.period_length).items():
            read.entries[period.key].extend(grouped)
        for period, odd in group_by_period(findings, config.period_length).items():
            read.findings[period.key].extend(odd)
    return read


def period_figures(gitlab: TimeTracking, group: str, periods: list[Period]) -> dict[str, tuple[int, int]]:
    """GitLab's timelog count and total seconds per period, over the range ``read_time`` reads for it:
    a cheap way to see which locked periods changed, without their nodes."""
    if not periods:
        return {}
    figures = gitlab.timelog_figures(gitlab.group_gid(group), [query_range(p.start, p.end) for p in periods])
    return {period.key: figure for period, figure in zip(periods, figures, strict=True)}


@dataclass(frozen=True)
class People:
    members: dict[str, GitLabMember]  # username -> member (with id and job title)
    roles: dict[str, str]  # PS engineers: username -> role

    @property
    def engineers(self) -> set[str]:
        return set(self.roles)


def read_people(gitlab: TimeTracking, group: str, rules: RollupRules) -> People:
    members = {member.user.username: member for member in gitlab.group_members_with_titles(group)}
    roles = {name: role for name, member in members.items() if (role := rules.role_of(member.job_title))}
    return People(members, roles)


def read_approval_issues(
    gitlab: TimeTracking, project: str, labels: ApprovalLabels, in_epic: Collection[int] = ()
) -> list[ApprovalIssue]:
    """Approval issues of the time-tracking project (any state), as the domain reads them.

    :param in_epic: global ids of the issues under the time-tracking epic.
    """
    issues = []
    for issue in gitlab.list_issues(project, state="all"):
        if not any(name.startswith(labels.period_prefix) or name in labels.levels for name in issue.labels):
            continue
        marker = find_certification(issue.description)
        issues.append(
            ApprovalIssue(
                issue.iid,
                issue.labels,
                tuple(user.username for user in issue.assignees),
                issue.web_url,
                certified_engineer=marker[0] if marker else None,
                author=issue.author.username if issue.author else "",
                issue_id=issue.id,
                description=issue.description,
                state=issue.state,
                in_epic=issue.id in in_epic,
            )
        )
    return issues


def engagement_directory(gitlab: TimeTracking, project: str, rules: RollupRules) -> dict[str, EngagementInfo]:
    """Engagement issue URL -> opportunity Id (the sync's marker), account (title), billing (type label)."""
    directory = {}
    for issue in gitlab.list_issues(project, state="all"):
        account = issue.title.split(":", 1)[0].replace("\u200b", "").strip() if ":" in issue.title else ""
        opportunity_id = find_marker(issue.description) or ""
        directory[issue.web_url] = EngagementInfo(
            issue.web_url,
            opportunity_id=opportunity_id,
            account=account,
            time_and_materials=any(label in rules.time_and_materials_types for label in issue.labels),
            problem="" if opportunity_id else "engagement issue has no opportunity link",
        )
    return directory


def read_budgets(
    salesforce: BudgetSource, directory: dict[str, EngagementInfo], budget_field: str, rules: RollupRules
) -> dict[str, Budget]:
    """Opportunity Id (18 and 15 characters) -> budget; raises ``SalesforceApiError`` when the lookup fails."""
    wanted = sorted({info.opportunity_id for info in directory.values() if SALESFORCE_ID.match(info.opportunity_id)})
    budgets: dict[str, Budget] = {}
    for record in salesforce.opportunity_budgets(wanted, budget_field) if wanted else []:
        budget = engagement_budget(
            record.budget, ((line.sku, line.quantity, line.total_price) for line in record.lines), rules
        )
        budgets[record.opportunity_id] = budgets[record.opportunity_id[:15]] = budget
    return budgets
