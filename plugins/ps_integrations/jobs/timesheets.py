"""Timesheet roll-up inputs (issue #8, second step): timelogs through GitLab GraphQL and approval
issues through REST, turned into the domain's rounded entries and approvals.

The DAG, exports, locking and finance mail build on these next.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from ps_integrations.domain.timesheets import (
    ROLE_TARGETS,
    ApprovalIssue,
    ApprovalLabels,
    Entry,
    Period,
    adjustments,
    approved_periods,
    category_of,
    is_billable,
    local_date,
    parse_period_key,
    progress,
    read_approval,
    round_hours,
    totals,
    utilization,
)
from ps_integrations.exports import Column, ExportFile, csv_file, json_file
from ps_integrations.run_summary import RunSummary

log = logging.getLogger(__name__)

TIMELOGS_QUERY = """
query($group: GroupID!, $start: Time!, $end: Time!, $after: String) {
  timelogs(groupId: $group, startDate: $start, endDate: $end, first: 100, after: $after, sort: SPENT_AT_ASC) {
    pageInfo { hasNextPage endCursor }
    nodes {
      id spentAt timeSpent summary
      user { username }
      issue { iid webUrl state title projectId epic { title } }
      project { fullPath }
    }
  }
}
"""


@dataclass(frozen=True)
class TimelogFinding:
    timelog_id: str
    engineer: str
    problem: str


def fetch_timelogs(gitlab: Any, group_path: str, start: date, end: date) -> list[dict[str, Any]]:
    """Every timelog of the group logged on start..end (inclusive), one GraphQL page of 100 at a time.

    The range is widened by a day each side so business-time-zone dates near midnight are not lost;
    callers keep the entries whose local date falls in their period.
    """
    from datetime import timedelta

    group = gitlab.client.groups.get(group_path)
    variables = {
        "group": f"gid://gitlab/Group/{group.id}",
        "start": (start - timedelta(days=1)).isoformat(),
        "end": (end + timedelta(days=1)).isoformat(),
    }
    return list(gitlab.graphql_nodes(TIMELOGS_QUERY, variables, ["timelogs"]))


def to_entries(
    nodes: Iterable[dict[str, Any]],
    business_timezone: str,
    engagement_project: str,
    first_day: date,
    last_day: date,
    today: date,
) -> tuple[list[Entry], list[TimelogFinding]]:
    """Rounded entries whose business-local date is in [first_day, last_day], and what looks wrong."""
    entries, findings = [], []
    for node in nodes:
        timelog_id = str(node["id"]).rsplit("/", 1)[-1]
        engineer = str((node.get("user") or {}).get("username") or "")
        spent_at = datetime.fromisoformat(str(node["spentAt"]).replace("Z", "+00:00"))
        day = local_date(spent_at, business_timezone)
        if not first_day <= day <= last_day:
            continue
        issue = node.get("issue")
        if issue is None:
            findings.append(TimelogFinding(timelog_id, engineer, "timelog without an issue"))
            continue
        if day > today:
            findings.append(TimelogFinding(timelog_id, engineer, f"future-dated entry ({day.isoformat()})"))
        project = str((node.get("project") or {}).get("fullPath") or "")
        is_engagement = project == engagement_project
        category = category_of((issue.get("epic") or {}).get("title"), is_engagement)
        if is_engagement and issue.get("state") == "closed":
            findings.append(
                TimelogFinding(timelog_id, engineer, f"time on a closed engagement ({issue.get('webUrl')})")
            )
        entries.append(
            Entry(
                timelog_id, engineer, day, str(issue.get("webUrl") or ""), category, round_hours(int(node["timeSpent"]))
            )
        )
    return entries, findings


def fetch_approval_issues(gitlab: Any, project_path: str, period_prefix: str) -> list[ApprovalIssue]:
    """Approval issues of the time-tracking project (any state), as the domain reads them."""
    project = gitlab.client.projects.get(project_path, lazy=True)
    issues = []
    for issue in project.issues.list(state="all", per_page=100, iterator=True):
        labels = tuple(issue.labels)
        if not any(label.startswith(period_prefix) for label in labels) and not any(
            label in ("ManagerCertifiedTimesheet", "HeadOfPSApproved", "FinanceApproved") for label in labels
        ):
            continue
        assignees = tuple(str(assignee["username"]) for assignee in (issue.assignees or []))
        issues.append(ApprovalIssue(int(issue.iid), labels, assignees, issue.web_url))
    return issues


# --- the export of one period ---------------------------------------------------------------------------
@dataclass(frozen=True)
class EngagementInfo:
    """What finance needs about an engagement issue (from the opportunity it was synced from)."""

    url: str
    opportunity_id: str = ""
    account: str = ""
    sku: str = ""
    budgeted_hours: Decimal | None = None
    time_and_materials: bool = False


APPROVED_HOURS_COLUMNS = (
    Column("engineer", "GitLab username of the engineer"),
    Column("period", "Timesheet period (ISO week 2026-W46 or month 2026-11)"),
    Column("date", "Business-local date the time was spent, ISO 8601"),
    Column("engagement", "Engagement issue URL (internal categories: the category issue)"),
    Column("opportunity_id", "Salesforce opportunity Id of the engagement, if any"),
    Column("account", "Customer account"),
    Column("sku", "Main SKU of the engagement"),
    Column("category", "Project Work, PS Internal, Internal Assisted, Global Company Meetings or PTO/Holidays"),
    Column("billable", "true when the hours are billable"),
    Column("hours", "Hours, rounded to the quarter hour (negative: a correction)"),
)
UTILIZATION_COLUMNS = (
    Column("engineer", "GitLab username"),
    Column("role", "engineer, project_manager, technical_architect or trainer"),
    Column("period", "Timesheet period"),
    Column("billable_hours", "Approved billable hours in the period"),
    Column("available_hours", "Working days x 8 h minus PTO/holiday hours"),
    Column("utilization_pct", "billable / available, percent"),
    Column("target_pct", "Target for the role, percent"),
    Column("gap_pct", "utilization minus target, percentage points"),
)
PROGRESS_COLUMNS = (
    Column("engagement", "Engagement issue URL"),
    Column("opportunity_id", "Salesforce opportunity Id"),
    Column("account", "Customer account"),
    Column("budgeted_hours", "Budgeted hours of the engagement"),
    Column("approved_hours_to_date", "Approved hours up to and including this period"),
    Column("percent_complete", "approved / budgeted, capped at 100"),
    Column("over_budget", "true when approved hours passed the budget"),
    Column("billing", "fixed_price or time_and_materials"),
    Column("hourly_rate", "Rate card rate for time-and-materials hours of this period"),
    Column("currency", "ISO 4217 currency of hourly_rate and revenue_to_release"),
    Column("revenue_to_release", "Time and materials: this period's approved hours x rate"),
)
FINDINGS_COLUMNS = (
    Column("engineer", "GitLab username (empty when the finding names none)"),
    Column("period", "Timesheet period"),
    Column("kind", "under_minimum, closed_engagement, unknown_engagement, future_dated, no_issue, untrusted_approval"),
    Column("detail", "What was found"),
)


def period_export(
    period: Period,
    entries: list[Entry],
    roles: dict[str, str],
    engagements: dict[str, EngagementInfo],
    hours_to_date: dict[str, Decimal],
    findings: list[tuple[str, str, str]],
    rate_card: dict[str, Decimal],
    currency: str = "USD",
    weekly_minimum: Decimal = Decimal(40),
) -> list[ExportFile]:
    """The data files of one period's export (the caller adds the manifest and README)."""
    summed = totals(entries)
    hours_rows = [
        {
            "engineer": entry.engineer,
            "period": period.key,
            "date": entry.day,
            "engagement": entry.engagement,
            "opportunity_id": engagements.get(entry.engagement, EngagementInfo(entry.engagement)).opportunity_id,
            "account": engagements.get(entry.engagement, EngagementInfo(entry.engagement)).account,
            "sku": engagements.get(entry.engagement, EngagementInfo(entry.engagement)).sku,
            "category": entry.category,
            "billable": is_billable(entry.category),
            "hours": entry.hours,
        }
        for entry in sorted(entries, key=lambda e: (e.engineer, e.day, e.engagement, e.timelog_id))
    ]
    utilization_rows = []
    all_findings = list(findings)
    for engineer in sorted(summed.by_engineer):
        result = utilization(
            engineer,
            roles.get(engineer),
            summed.billable.get(engineer, Decimal(0)),
            summed.pto.get(engineer, Decimal(0)),
            period,
        )
        utilization_rows.append(
            {
                "engineer": engineer,
                "role": roles.get(engineer, ""),
                "period": period.key,
                "billable_hours": result.billable_hours,
                "available_hours": result.available_hours,
                "utilization_pct": None
                if result.utilization is None
                else (result.utilization * 100).quantize(Decimal("0.01")),
                "target_pct": None if result.target is None else (result.target * 100).quantize(Decimal("0.01")),
                "gap_pct": None if result.gap is None else (result.gap * 100).quantize(Decimal("0.01")),
            }
        )
        if period.key.count("-W") and summed.by_engineer[engineer] < weekly_minimum:
            all_findings.append(
                (engineer, "under_minimum", f"{summed.by_engineer[engineer]} h logged, minimum {weekly_minimum} h")
            )
    period_billable: dict[str, Decimal] = {}
    for entry in entries:
        if is_billable(entry.category):
            period_billable[entry.engagement] = period_billable.get(entry.engagement, Decimal(0)) + entry.hours
    progress_rows = []
    for url in sorted(period_billable):
        info = engagements.get(url, EngagementInfo(url))
        done = progress(url, info.budgeted_hours, hours_to_date.get(url, period_billable[url]))
        rate = rate_card.get("time_and_materials") if info.time_and_materials else None
        progress_rows.append(
            {
                "engagement": url,
                "opportunity_id": info.opportunity_id,
                "account": info.account,
                "budgeted_hours": info.budgeted_hours,
                "approved_hours_to_date": done.approved_hours,
                "percent_complete": done.percent_complete,
                "over_budget": done.over_budget,
                "billing": "time_and_materials" if info.time_and_materials else "fixed_price",
                "hourly_rate": rate,
                "currency": currency if rate is not None else "",
                "revenue_to_release": (period_billable[url] * rate).quantize(Decimal("0.01"))
                if rate is not None
                else None,
            }
        )
    finding_rows = [
        {"engineer": engineer, "period": period.key, "kind": kind, "detail": detail}
        for engineer, kind, detail in sorted(all_findings)
    ]
    return [
        csv_file(
            "approved_hours.csv",
            "Every approved timelog of the period, rounded to the quarter hour.",
            APPROVED_HOURS_COLUMNS,
            hours_rows,
        ),
        csv_file(
            "utilization.csv",
            "Per engineer: billable and available hours, utilization against the role target.",
            UTILIZATION_COLUMNS,
            utilization_rows,
        ),
        csv_file(
            "engagement_progress.csv",
            "Per engagement: budget, approved hours to date, percent complete, revenue to release.",
            PROGRESS_COLUMNS,
            progress_rows,
        ),
        csv_file(
            "findings.csv",
            "What needs a look: low weeks, time on closed or unknown engagements, odd entries, untrusted approvals.",
            FINDINGS_COLUMNS,
            finding_rows,
        ),
    ]


# --- locking -----------------------------------------------------------------------------------------
class ExportLedger:
    """What was exported per (period, engineer), in the state store.

    Exported (period, engineer) pairs are locked: their timelogs are never re-exported. A later
    change to one of them is recorded once as an adjustment, reported in the export being written.
    """

    def __init__(self, store: Any) -> None:
        self.store = store

    def locked_engineers(self, period: str) -> set[str]:
        return {row["engineer"] for row in self.store.fetch_all("timesheets/locked_engineers", {"period": period})}

    def exported_entries(self, period: str) -> list[Entry]:
        return [
            Entry(
                row["timelog_id"],
                row["engineer"],
                date.fromisoformat(row["day"]),
                row["engagement"],
                row["category"],
                Decimal(row["hours"]),
            )
            for row in self.store.fetch_all("timesheets/exported_entries", {"period": period})
        ]

    def lock(
        self, period: str, engineer: str, approval_level: int, entries: list[Entry], run_id: str, now: datetime
    ) -> None:
        """Record an engineer's exported entries of a period and lock the pair (idempotent)."""
        with self.store.transaction() as connection:
            if entries:
                self.store.execute(
                    "timesheets/record_entry",
                    [
                        {
                            "period": period,
                            "engineer": entry.engineer,
                            "timelog_id": entry.timelog_id,
                            "day": entry.day.isoformat(),
                            "engagement": entry.engagement,
                            "category": entry.category,
                            "hours": str(entry.hours),
                        }
                        for entry in entries
                    ],
                    connection,
                )
            self.store.execute(
                "timesheets/lock",
                {
                    "period": period,
                    "engineer": engineer,
                    "approval_level": approval_level,
                    "run_id": run_id,
                    "exported_at": now.isoformat(timespec="seconds"),
                },
                connection,
            )

    def record_adjustments(
        self, period: str, changes: list[Any], reported_in: str, now: datetime
    ) -> list[dict[str, Any]]:
        """Store adjustments not seen before; return every adjustment reported in ``reported_in``."""
        for change in changes:
            self.store.execute(
                "timesheets/record_adjustment",
                {
                    "period": period,
                    "timelog_id": change.timelog_id,
                    "engineer": change.engineer,
                    "change": change.change,
                    "original_hours": "" if change.original_hours is None else str(change.original_hours),
                    "new_hours": "" if change.new_hours is None else str(change.new_hours),
                    "original_day": change.original_day.isoformat() if change.original_day else "",
                    "new_day": change.new_day.isoformat() if change.new_day else "",
                    "detected_at": now.isoformat(timespec="seconds"),
                    "reported_in": reported_in,
                },
            )
        return self.store.fetch_all("timesheets/adjustments_reported_in", {"reported_in": reported_in})


# --- the job -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RollupConfig:
    group: str = "professional-services"
    engagements_project: str = "professional-services/engagements"
    time_tracking_project: str = "professional-services/time-tracking"
    business_timezone: str = "UTC"
    release_level: int = 2
    weekly_minimum_hours: int = 40
    hourly_rate_time_and_materials: str = "250"
    currency: str = "USD"
    time_and_materials_types: tuple[str, ...] = ("Embedded Engineer",)
    finance_recipients: str = "finance@example.com"

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> RollupConfig:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown timesheet roll-up settings: {sorted(unknown)}")
        values = dict(data)
        if "time_and_materials_types" in values:
            values["time_and_materials_types"] = tuple(values["time_and_materials_types"])
        return cls(**values)


ADJUSTMENT_COLUMNS = (
    Column("period", "The locked period the timelog belongs to"),
    Column("timelog_id", "GitLab timelog id"),
    Column("engineer", "Author of the timelog"),
    Column("change", "added, removed or edited after the period was exported"),
    Column("original_hours", "Hours as exported"),
    Column("new_hours", "Hours now"),
    Column("original_day", "Date as exported, ISO 8601"),
    Column("new_day", "Date now, ISO 8601"),
    Column("detected_at", "When the change was found, ISO 8601 UTC"),
)


def engagement_directory(
    gitlab: Any, project_path: str, time_and_materials_types: tuple[str, ...]
) -> dict[str, EngagementInfo]:
    """Engagement issue URL -> opportunity Id (from the sync's marker), account (from the title)."""
    from ps_integrations.domain.opportunity_sync import find_marker

    project = gitlab.client.projects.get(project_path, lazy=True)
    directory = {}
    for issue in project.issues.list(state="all", per_page=100, iterator=True):
        account = str(issue.title).split(":", 1)[0].replace("\u200b", "").strip() if ":" in str(issue.title) else ""
        directory[issue.web_url] = EngagementInfo(
            issue.web_url,
            opportunity_id=find_marker(issue.description) or "",
            account=account,
            time_and_materials=any(label in time_and_materials_types for label in issue.labels),
        )
    return directory


class TimesheetRollup:
    def __init__(self, gitlab: Any, store: Any, exports: Any, config: RollupConfig, run_id: str) -> None:
        self.gitlab, self.store, self.exports, self.config, self.run_id = gitlab, store, exports, config, run_id
        self.ledger = ExportLedger(store)

    def run(self, until: date, only_period: str | None, today: date, now: datetime) -> Any:
        summary = RunSummary(
            counts={"periods": 0, "exported engineer-periods": 0, "entries": 0, "adjustments": 0, "failed": 0}
        )
        members = self.gitlab.client.groups.get(self.config.group).members_all.list(get_all=True)
        roles = {m.username: m.job_title for m in members if getattr(m, "job_title", "") in ROLE_TARGETS}
        approvals = [
            read_approval(issue, ApprovalLabels(), set(roles))
            for issue in fetch_approval_issues(self.gitlab, self.config.time_tracking_project, "timesheet::")
        ]
        untrusted = [a for a in approvals if not a.trusted]
        for approval in untrusted:
            summary.note(f"untrusted approval issue #{approval.issue_iid}: {approval.problem}")
        released = approved_periods(approvals, self.config.release_level)
        keys = sorted({period for (_engineer, period) in released})
        if only_period:
            keys = [only_period]
        periods = [parse_period_key(key) for key in keys]
        periods = [period for period in periods if period.end <= until + timedelta(days=1) or only_period]
        directory = engagement_directory(
            self.gitlab, self.config.engagements_project, self.config.time_and_materials_types
        )
        written_folders = []
        for period in periods:
            nodes = fetch_timelogs(self.gitlab, self.config.group, period.start, period.end - timedelta(days=1))
            current, timelog_findings = to_entries(
                nodes,
                self.config.business_timezone,
                self.config.engagements_project,
                period.start,
                period.end - timedelta(days=1),
                today,
            )
            released_here = {engineer for (engineer, key) in released if key == period.key}
            locked = self.ledger.locked_engineers(period.key)
            exported = self.ledger.exported_entries(period.key)
            fresh = [e for e in current if e.engineer in released_here - locked]
            entries = [e for e in exported if e.engineer in locked] + fresh
            unapproved: dict[str, Decimal] = {}
            for entry in current:
                if entry.engineer not in released_here and entry.engineer not in locked:
                    unapproved[entry.engineer] = unapproved.get(entry.engineer, Decimal(0)) + entry.hours
            for engineer, hours in sorted(unapproved.items()):
                log.info("Unapproved: %s %s %s h (not exported)", engineer, period.key, hours)
            if unapproved:
                total = sum(unapproved.values(), Decimal(0))
                summary.note(f"unapproved {period.key}: {len(unapproved)} engineer(s), {total} h not exported")
            if not entries:
                continue
            changes = adjustments(
                [e for e in exported if e.engineer in locked], [e for e in current if e.engineer in locked]
            )
            findings = [
                (
                    f.engineer,
                    "no_issue"
                    if "without an issue" in f.problem
                    else "future_dated"
                    if "future" in f.problem
                    else "closed_engagement",
                    f.problem,
                )
                for f in timelog_findings
            ]
            findings += [
                (a.engineer or "", "untrusted_approval", f"issue #{a.issue_iid}: {a.problem}")
                for a in untrusted
                if a.period == period.key
            ]
            files = period_export(
                period,
                entries,
                roles,
                directory,
                {},
                findings,
                {"time_and_materials": Decimal(self.config.hourly_rate_time_and_materials)},
                self.config.currency,
                Decimal(self.config.weekly_minimum_hours),
            )
            folder = f"timesheets/{period.key}"
            reported = (
                self.ledger.record_adjustments(period.key, changes, folder, now)
                if changes
                else self.store.fetch_all("timesheets/adjustments_reported_in", {"reported_in": folder})
            )
            if reported:
                files.append(
                    csv_file(
                        "adjustments.csv",
                        "Changes to timelogs of locked periods, found while building this export.",
                        ADJUSTMENT_COLUMNS,
                        reported,
                    )
                )
                summary.add("adjustments", len(reported))
                summary.note(
                    f"{len(reported)} adjustment(s) to locked timelogs of {period.key} "
                    f"reported in {folder}/adjustments.csv"
                )
            approval_state = [
                {"engineer": engineer, "level": approval.level, "issue": approval.issue_iid}
                for (engineer, key), approval in sorted(released.items())
                if key == period.key
            ]
            manifest = json_file(
                "manifest.json",
                "Row counts, sha256 of each data file, and the approval state the export was built from.",
                {
                    "period": period.key,
                    "files": {f.name: {"sha256": f.sha256, "bytes": len(f.content)} for f in files},
                    "approvals": approval_state,
                    "release_level": self.config.release_level,
                },
            )
            paths = self.exports.write_folder(folder, f"Approved PS hours, {period.key}", [*files, manifest])
            for engineer in sorted(released_here - locked):
                self.ledger.lock(
                    period.key,
                    engineer,
                    released[(engineer, period.key)].level,
                    [e for e in fresh if e.engineer == engineer],
                    self.run_id,
                    now,
                )
                summary.add("exported engineer-periods")
            summary.add("periods")
            summary.add("entries", len(entries))
            written_folders.append(paths[0].rsplit("/", 1)[0])
        if written_folders:
            summary.note(f"exports: {', '.join(written_folders)}")
        return summary
