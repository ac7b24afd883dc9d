"""Timesheet roll-up (issue #8): approved PS hours from GitLab to finance.

Inputs: timelogs through GitLab GraphQL, approval issues and engagement issues through REST,
budgets and SKUs of the engagements' opportunities through Salesforce. Output: one folder per
period in the exports store, locked once exported; later changes become adjustments.
"""

from __future__ import annotations

import base64
import gc
import json
import logging
import os
import re
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from itertools import groupby
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from ps_integrations.domain.timesheets import (
    BILLABLE_CATEGORY,
    CATEGORIES,
    CENT,
    PTO_CATEGORY,
    UPDATE_NOTE_MARKER,
    ApprovalIssue,
    ApprovalLabels,
    CategoryRules,
    CertificationRow,
    Entry,
    Period,
    RollupRules,
    RoundingCheck,
    adjustments,
    approved_periods,
    certification_description,
    certification_digest,
    certification_rows,
    default_category_labels,
    exact_hours,
    find_certification,
    group_by_period,
    is_billable,
    line_hours,
    logged_minutes,
    parse_period_key,
    period_of,
    progress,
    read_approval,
    round_hours,
    rounding_check,
    utilization,
)
from ps_integrations.exports import Column, ExportFile, csv_field, csv_file, csv_lines_file, format_value, json_file
from ps_integrations.paths import INCLUDE_DIR
from ps_integrations.run_summary import RecordFailure, RunSummary

log = logging.getLogger(__name__)

RULES_FILE = INCLUDE_DIR / "ps_timesheet_rollup" / "rules.yml"
JOB = "ps_timesheet_rollup"
SOQL_FIELD = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(__c)?$")

TIMELOGS_QUERY_TEMPLATE = """
query($group: GroupID!, $start: Time!, $end: Time!, $after: String) {
  timelogs(groupId: $group, startDate: $start, endDate: $end, first: 100, after: $after, sort: SPENT_AT_ASC) {
    pageInfo { hasNextPage endCursor }
    nodes {
      id spentAt timeSpent summary
      user { username }
      issue { iid webUrl state title projectId %(category_fields)s }
      project { fullPath }
    }
  }
}
"""
ISSUE_FIELDS_QUERY = '{ __type(name: "Issue") { fields { name } } }'


@dataclass(frozen=True)
class GitLabCapabilities:
    """What the GitLab instance offers for categorising time (issue #20): GitLab Free/CE has no
    epics - asking for ``Issue.epic`` there fails the whole query - so it is asked only where it exists."""

    issue_epic: bool

    @property
    def category_fields(self) -> str:
        return "epic { title }" if self.issue_epic else "labels(first: 20) { nodes { title } }"

    def describe(self) -> str:
        if self.issue_epic:
            return "GitLab has epics: categories from the issue's epic"
        return "GitLab without epics (Free/CE): categories from labels and the configured mapping"


def gitlab_capabilities(gitlab: Any) -> GitLabCapabilities:
    """Introspect the instance's ``Issue`` type once (GraphQL introspection works on every edition)."""
    data = gitlab.graphql_query(ISSUE_FIELDS_QUERY)
    fields = {item["name"] for item in ((data.get("__type") or {}).get("fields") or [])}
    return GitLabCapabilities(issue_epic="epic" in fields)


def timelogs_query(capabilities: GitLabCapabilities) -> str:
    return TIMELOGS_QUERY_TEMPLATE % {"category_fields": capabilities.category_fields}


TIMELOGS_QUERY = timelogs_query(GitLabCapabilities(issue_epic=True))  # a Premium/Ultimate instance


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector: the roll-up allocates millions of small, acyclic
    objects (timelogs, entries, rows), and each automatic collection would scan them all again."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def load_rules(path: Path = RULES_FILE) -> RollupRules:
    import yaml

    return RollupRules.from_mapping(yaml.safe_load(path.read_text(encoding="utf-8")) or {})


@dataclass(frozen=True)
class TimelogFinding:
    timelog_id: str
    engineer: str
    kind: str  # no_issue, future_dated, closed_engagement
    problem: str
    day: date


def _query_range(start: date, end: date) -> tuple[str, str]:
    """The GraphQL date range for timelogs dated start..end in the business time zone: widened by a
    day each side so dates near midnight are not lost; callers keep what falls in their period."""
    return (start - timedelta(days=1)).isoformat(), (end + timedelta(days=1)).isoformat()


def fetch_timelogs(
    gitlab: Any,
    group_path: str,
    start: date,
    end: date,
    capabilities: GitLabCapabilities | None = None,
    stats: dict[str, int] | None = None,
) -> list[dict[str, Any]]:
    """Every timelog of the group logged on start..end (inclusive), one GraphQL page of 100 at a time.

    Timelogs are de-duplicated by id: how GitLab breaks ties between equal ``spentAt`` across page
    boundaries is not documented, and a timelog seen on two pages must count once (the later copy
    wins). ``stats["duplicates"]`` counts what was dropped.
    """
    group = gitlab.client.groups.get(group_path)
    first, last = _query_range(start, end)
    variables = {"group": f"gid://gitlab/Group/{group.id}", "start": first, "end": last}
    query = timelogs_query(capabilities) if capabilities is not None else TIMELOGS_QUERY
    by_id: dict[str, dict[str, Any]] = {}
    seen = 0
    for node in gitlab.graphql_nodes(query, variables, ["timelogs"]):
        seen += 1
        by_id[str(node["id"])] = node
    if stats is not None:
        stats["duplicates"] = stats.get("duplicates", 0) + seen - len(by_id)
    return list(by_id.values())


PERIOD_FIGURES_PER_QUERY = 20  # aliases per GraphQL request, well inside GitLab's query complexity limit


def fetch_period_figures(gitlab: Any, group_path: str, periods: list[Period]) -> dict[str, tuple[int, int]]:
    """GitLab's timelog ``count`` and ``totalSpentTime`` (seconds) per period, over the range that
    ``fetch_timelogs`` reads for it: a cheap way to see which locked periods changed, without their nodes.

    :return: period key -> (timelog count, total seconds); ``PERIOD_FIGURES_PER_QUERY`` periods a request.
    """
    if not periods:
        return {}
    group = gitlab.client.groups.get(group_path)
    figures: dict[str, tuple[int, int]] = {}
    for offset in range(0, len(periods), PERIOD_FIGURES_PER_QUERY):
        batch = periods[offset : offset + PERIOD_FIGURES_PER_QUERY]
        variables: dict[str, Any] = {"group": f"gid://gitlab/Group/{group.id}"}
        declarations, fields = ["$group: GroupID!"], []
        for index, period in enumerate(batch):
            variables[f"start{index}"], variables[f"end{index}"] = _query_range(period.start, period.end)
            declarations.append(f"$start{index}: Time!, $end{index}: Time!")
            fields.append(
                f"p{index}: timelogs(groupId: $group, startDate: $start{index}, endDate: $end{index}) "
                "{ count totalSpentTime }"
            )
        data = gitlab.graphql_query(f"query({', '.join(declarations)}) {{ {' '.join(fields)} }}", variables)
        for index, period in enumerate(batch):
            figures[period.key] = (int(data[f"p{index}"]["count"]), int(data[f"p{index}"]["totalSpentTime"]))
    return figures


def _local_day_reader(business_timezone: str, server_timezone: str = "UTC") -> Callable[[str], date]:
    """``spentAt`` (ISO 8601, UTC) -> business-local date, converting once per UTC hour.

    Time-zone offsets change only on UTC hour boundaries, so the local time of the hour's start
    plus the minutes decides the date; a million timelogs touch about 17,000 distinct hours.
    A date-only ``/spend 1h 2026-10-05`` is stored by GitLab at midnight in the *server's* time
    zone: a ``spentAt`` exactly on the server's midnight keeps the server-local date the engineer
    typed, wherever the business time zone is.
    """
    zone = ZoneInfo(business_timezone)
    server = ZoneInfo(server_timezone)
    hour_starts: dict[str, tuple[datetime, datetime]] = {}

    def local_day(spent_at: str) -> date:
        if len(spent_at) < 16 or not (spent_at.endswith("Z") or spent_at.endswith("+00:00")):
            moment = datetime.fromisoformat(spent_at.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                raise ValueError(f"timelog time {spent_at!r} carries no time zone")
            on_server = moment.astimezone(server)
            if on_server.time() == datetime.min.time():
                return on_server.date()
            return moment.astimezone(zone).date()
        hour = spent_at[:13]
        starts = hour_starts.get(hour)
        if starts is None:
            utc_start = datetime.fromisoformat(hour + ":00:00+00:00")
            starts = hour_starts[hour] = (utc_start.astimezone(zone), utc_start.astimezone(server))
        start, server_start = starts
        if server_start.hour == 0 and server_start.minute == 0 and _on_the_hour(spent_at):
            return server_start.date()  # a date-only entry: the server's calendar day
        minutes = start.minute + int(spent_at[14:16])
        if start.hour == 23 and minutes >= 60:
            return start.date() + timedelta(days=1)
        return start.date()

    return local_day


def _on_the_hour(spent_at: str) -> bool:
    """``2026-10-05T00:00:00Z`` / ``...00:00.000Z`` / ``...00:00+00:00``: no minutes, seconds or fraction."""
    tail = spent_at[14:].removesuffix("Z").removesuffix("+00:00")
    return tail in ("00:00", "00:00.000", "00:00.000000", "00")


NOT_PAYABLE = ("no_issue", "future_dated")  # findings whose timelog is left out of every total


def to_entries(
    nodes: Iterable[dict[str, Any]],
    business_timezone: str,
    engagement_project: str,
    first_day: date,
    last_day: date,
    today: date,
    categories: CategoryRules | None = None,
    server_timezone: str = "UTC",
) -> tuple[list[Entry], list[TimelogFinding]]:
    """Unrounded entries whose business-local date is in [first_day, last_day], and what looks wrong.

    Timelogs without an issue or dated after ``today`` are not payable: they become findings and
    no entry (a future-dated timelog is picked up once its day has come, as an adjustment if its
    period was exported by then).
    """
    local_day = _local_day_reader(business_timezone, server_timezone)
    rules = categories or CategoryRules()
    # plain dict as cache: a million timelogs have a few dozen categories
    category_cache: dict[Any, str] = {}
    make_entry = Entry._make
    entries, findings = [], []
    for node in nodes:
        day = local_day(str(node["spentAt"]))
        if not first_day <= day <= last_day:
            continue
        timelog_id = str(node["id"]).rsplit("/", 1)[-1]
        engineer = str((node.get("user") or {}).get("username") or "")
        issue = node.get("issue")
        if issue is None:
            findings.append(TimelogFinding(timelog_id, engineer, "no_issue", "timelog without an issue", day))
            continue
        url = str(issue.get("webUrl") or "")
        seconds = int(node["timeSpent"])
        if day > today:
            findings.append(
                TimelogFinding(
                    timelog_id,
                    engineer,
                    "future_dated",
                    f"future-dated entry ({day.isoformat()}, {seconds / 60:g} min on {url}), not paid before its day",
                    day,
                )
            )
            continue
        is_engagement = (node.get("project") or {}).get("fullPath") == engagement_project
        if is_engagement and issue.get("state") == "closed":
            findings.append(
                TimelogFinding(timelog_id, engineer, "closed_engagement", f"time on a closed engagement ({url})", day)
            )
        epic = issue.get("epic")
        labels = issue.get("labels")
        label_names = tuple(str(label.get("title")) for label in labels.get("nodes") or [] if label) if labels else ()
        kind = (is_engagement, epic.get("title") if epic else None, label_names, url if rules.by_issue else "")
        category = category_cache.get(kind)
        if category is None:
            category = category_cache[kind] = rules.category(*kind)
        entries.append(make_entry((timelog_id, engineer, day, url, category, seconds)))
    return entries, findings


def fetch_approval_issues(gitlab: Any, project_path: str, labels: ApprovalLabels) -> list[ApprovalIssue]:
    """Approval issues of the time-tracking project (any state), as the domain reads them."""
    project = gitlab.client.projects.get(project_path, lazy=True)
    issues = []
    for issue in project.issues.list(state="all", per_page=100, iterator=True):
        names = tuple(issue.labels)
        if not any(name.startswith(labels.period_prefix) or name in labels.levels for name in names):
            continue
        assignees = tuple(str(assignee["username"]) for assignee in (issue.assignees or []))
        marker = find_certification(issue.description)
        issues.append(
            ApprovalIssue(
                int(issue.iid),
                names,
                assignees,
                issue.web_url,
                certified_engineer=marker[0] if marker else None,
                author=str((issue.author or {}).get("username") or ""),
                issue_id=int(issue.id),
                description=str(issue.description or ""),
                state=str(issue.state),
                in_epic=bool(getattr(issue, "epic_iid", None)),
            )
        )
    return issues


# --- engagements -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EngagementInfo:
    """What finance needs about an engagement issue (from the opportunity it was synced from)."""

    url: str
    opportunity_id: str = ""
    account: str = ""
    sku: str = ""
    budgeted_hours: Decimal | None = None
    time_and_materials: bool = False
    budget_source: str = ""  # opportunity, sku_table or empty
    problem: str = ""  # why the engagement is unknown to Salesforce, if it is


def engagement_directory(gitlab: Any, project_path: str, rules: RollupRules) -> dict[str, EngagementInfo]:
    """Engagement issue URL -> opportunity Id (the sync's marker), account (title), billing (type label)."""
    from ps_integrations.domain.opportunity_sync import find_marker

    project = gitlab.client.projects.get(project_path, lazy=True)
    directory = {}
    for issue in project.issues.list(state="all", per_page=100, iterator=True):
        title = str(issue.title)
        account = title.split(":", 1)[0].replace("\u200b", "").strip() if ":" in title else ""
        opportunity_id = find_marker(issue.description) or ""
        directory[issue.web_url] = EngagementInfo(
            issue.web_url,
            opportunity_id=opportunity_id,
            account=account,
            time_and_materials=any(label in rules.time_and_materials_types for label in issue.labels),
            problem="" if opportunity_id else "engagement issue has no opportunity link",
        )
    return directory


def opportunity_budgets(
    salesforce: Any, opportunity_ids: Iterable[str], budget_field: str, rules: RollupRules
) -> dict[str, tuple[Decimal | None, str, str]]:
    """Opportunity Id -> (budgeted hours, main SKU, budget source), from Salesforce.

    The budget is the opportunity's ``budget_field`` when set, else quantity x hours per SKU from
    the rules' table. Opportunities Salesforce does not return are absent from the result.
    """
    from ps_integrations.domain.opportunity_sync import SALESFORCE_ID

    if not SOQL_FIELD.match(budget_field):
        raise ValueError(f"budget_field {budget_field!r} is not a Salesforce field name")
    wanted = sorted({oid for oid in opportunity_ids if SALESFORCE_ID.match(oid)})
    found: dict[str, tuple[Decimal | None, str, str]] = {}
    for offset in range(0, len(wanted), 200):
        chunk = wanted[offset : offset + 200]
        quoted = ", ".join(f"'{oid}'" for oid in chunk)
        soql = (
            f"SELECT Id, {budget_field}, (SELECT Quantity, TotalPrice, Product2.ProductCode "  # noqa: S608
            f"FROM OpportunityLineItems ORDER BY Id) FROM Opportunity WHERE Id IN ({quoted})"
        )
        for record in salesforce.query_records(soql):
            items = (record.get("OpportunityLineItems") or {}).get("records") or []
            lines = [
                (
                    (item.get("Product2") or {}).get("ProductCode"),
                    Decimal(str(item.get("Quantity") or 0)),
                    Decimal(str(item.get("TotalPrice") or 0)),
                )
                for item in items
            ]
            main = max(lines, key=lambda line: (line[2], line[0] or ""), default=(None, Decimal(0), Decimal(0)))
            field_value = record.get(budget_field)
            budget: Decimal | None
            if field_value not in (None, ""):
                budget, source = Decimal(str(field_value)), "opportunity"
            else:
                budget = rules.budget_from_skus((sku, quantity) for sku, quantity, _ in lines)
                source = "sku_table" if budget is not None else ""
            for oid in (record["Id"], record["Id"][:15]):
                found[oid] = (budget, main[0] or "", source)
    return found


def with_budgets(
    directory: dict[str, EngagementInfo], budgets: dict[str, tuple[Decimal | None, str, str]]
) -> dict[str, EngagementInfo]:
    out = {}
    for url, info in directory.items():
        if not info.opportunity_id:
            out[url] = info
            continue
        known = budgets.get(info.opportunity_id) or budgets.get(info.opportunity_id[:15])
        if known is None:
            out[url] = EngagementInfo(
                url,
                info.opportunity_id,
                info.account,
                time_and_materials=info.time_and_materials,
                problem=f"opportunity {info.opportunity_id} not found in Salesforce",
            )
        else:
            budget, sku, source = known
            out[url] = EngagementInfo(
                url, info.opportunity_id, info.account, sku, budget, info.time_and_materials, source
            )
    return out


# --- the export of one period ---------------------------------------------------------------------------
APPROVED_HOURS_COLUMNS = (
    Column("engineer", "GitLab username of the engineer"),
    Column("period", "Timesheet period (ISO week 2026-W46 or month 2026-11)"),
    Column("date", "Business-local date the time was spent, ISO 8601"),
    Column("engagement", "Engagement issue URL (internal categories: the category issue)"),
    Column("opportunity_id", "Salesforce opportunity Id of the engagement, if any"),
    Column("account", "Customer account"),
    Column("sku", "Main SKU of the engagement (largest line item of the opportunity)"),
    Column("category", "Project Work, PS Internal, Internal Assisted, Global Company Meetings or PTO/Holidays"),
    Column("billable", "true when the hours are billable"),
    Column("timelogs", "Number of GitLab timelogs in the row (one row per engineer, date and engagement)"),
    Column("logged_minutes", "Minutes logged, unrounded (negative: a correction)"),
    Column("hours", "Hours billed under the rules' rounding policy (manifest.json: rounding)"),
)
UTILIZATION_COLUMNS = (
    Column("engineer", "GitLab username"),
    Column("role", "engineer, project_manager, technical_architect or trainer"),
    Column("period", "Timesheet period"),
    Column("billable_hours", "Approved billable hours in the period"),
    Column("logged_hours", "Approved hours in the period, rounded as in approved_hours.csv"),
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
    Column("budget_source", "opportunity (the deal's budget field) or sku_table (quantity x hours per SKU)"),
    Column("period_hours", "Approved billable hours of this period"),
    Column("approved_hours_to_date", "Approved billable hours up to and including this period"),
    Column("percent_complete", "approved / budgeted, capped at 100"),
    Column("over_budget", "true when approved hours passed the budget"),
    Column("billing", "fixed_price or time_and_materials"),
    Column("hourly_rate", "Time and materials: blended rate card rate of this period's hours"),
    Column("currency", "ISO 4217 currency of hourly_rate and revenue_to_release"),
    Column("revenue_to_release", "Time and materials: this period's hours x each engineer's role rate"),
)
FINDINGS_COLUMNS = (
    Column("engineer", "GitLab username (empty when the finding names none)"),
    Column("period", "Timesheet period"),
    Column(
        "kind",
        "under_minimum, closed_engagement, unknown_engagement, future_dated, no_issue, untrusted_approval, no_rate",
    ),
    Column("detail", "What was found"),
)
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


def _pct(share: Decimal | None) -> Decimal | None:
    return None if share is None else (share * 100).quantize(Decimal("0.01"))


def _by_engineer_day_engagement(entries: list[Entry]) -> list[Entry]:
    """``sorted(entries, key=(engineer, day, engagement, timelog_id))``, faster: one small sort per
    engineer instead of comparing whole keys across the period (a third of the time at 1M rows)."""
    per_engineer: dict[str, list[Entry]] = {}
    for entry in entries:
        found = per_engineer.get(entry.engineer)
        if found is None:
            per_engineer[entry.engineer] = [entry]
        else:
            found.append(entry)
    ordered: list[Entry] = []
    within = attrgetter("day", "engagement", "timelog_id")
    for engineer in sorted(per_engineer):
        ordered.extend(sorted(per_engineer[engineer], key=within))
    return ordered


@dataclass
class EngineerSums:
    """One engineer's figures of a period, summed from the export lines."""

    seconds: int = 0
    timelogs: int = 0
    lines: int = 0
    rounded: Decimal = Decimal("0.00")
    billable: Decimal = Decimal("0.00")
    pto: Decimal = Decimal("0.00")


def _approved_hours_lines(
    period: Period, entries: list[Entry], engagements: dict[str, EngagementInfo], policy: str
) -> tuple[list[str], dict[str, EngineerSums], dict[tuple[str, str], Decimal]]:
    """approved_hours.csv rows - one per engineer, date and engagement, rounded under ``policy`` -
    with the per-engineer sums and the billable hours per (engagement, engineer).

    Cells are rendered once per distinct value: a large team's year has a million timelogs but
    few distinct engineers, engagements, days and durations. Per-engineer sums are kept in locals
    and stored when the (sorted) engineer changes.
    """
    described: dict[str, str] = {}
    days: dict[date, str] = {}
    kinds: dict[str, tuple[str, bool, bool]] = {}
    by_seconds: dict[int, tuple[Decimal, str]] = {}  # line seconds -> (hours, "minutes,hours")
    per_entry: dict[int, Decimal] = {}
    sums: dict[str, EngineerSums] = {}
    billable_by: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    rounds_per_entry = policy == "per_entry"
    exact = policy == "none"
    key = csv_field(period.key)
    lines: list[str] = []
    append = lines.append
    current: str | None = None
    engineer = ""
    figures = EngineerSums()
    zero = Decimal("0.00")
    for (name, when, engagement), group in groupby(_by_engineer_day_engagement(entries), key=_LINE_KEY):
        members = list(group)
        category = members[0][4]
        if len(members) == 1:
            seconds = members[0][5]
            count = 1
        else:
            seconds = sum(map(_SECONDS, members))
            count = len(members)
        if rounds_per_entry:
            hours = zero
            for entry_seconds in map(_SECONDS, members):
                rounded = per_entry.get(entry_seconds)
                if rounded is None:
                    rounded = per_entry[entry_seconds] = round_hours(entry_seconds)
                hours += rounded
            hours = hours.quantize(CENT)
            cells = f"{format_value(logged_minutes(seconds))},{format_value(hours)}"
        else:
            cached = by_seconds.get(seconds)
            if cached is None:
                line = exact_hours(seconds) if exact else round_hours(seconds)
                cached = by_seconds[seconds] = (line, f"{format_value(logged_minutes(seconds))},{format_value(line)}")
            hours, cells = cached
        if name != current:
            if current is not None:
                sums[current] = figures
            current, figures = name, EngineerSums()
            engineer = f"{csv_field(name)},{key}"
        about = described.get(engagement)
        if about is None:
            info = engagements.get(engagement) or EngagementInfo(engagement)
            about = described[engagement] = ",".join(
                csv_field(value) for value in (engagement, info.opportunity_id, info.account, info.sku)
            )
        day = days.get(when)
        if day is None:
            day = days[when] = when.isoformat()
        kind = kinds.get(category)
        if kind is None:
            billable = is_billable(category)
            kind = kinds[category] = (
                f"{csv_field(category)},{'true' if billable else 'false'}",
                billable,
                category == PTO_CATEGORY,
            )
        append(f"{engineer},{day},{about},{kind[0]},{count},{cells}")
        figures.seconds += seconds
        figures.timelogs += count
        figures.lines += 1
        figures.rounded += hours
        if kind[1]:
            figures.billable += hours
            billable_by[(engagement, name)] += hours
        elif kind[2]:
            figures.pto += hours
    if current is not None:
        sums[current] = figures
    return lines, sums, billable_by


_LINE_KEY = itemgetter(1, 2, 3)  # (engineer, day, engagement) of an Entry
_SECONDS = itemgetter(5)


@dataclass
class PeriodExport:
    """The data files of one period's export and the rounding check of its manifest."""

    files: list[ExportFile]
    rounding: list[RoundingCheck]
    policy: str

    @property
    def rounding_within_bounds(self) -> bool:
        return all(check.within_bound for check in self.rounding)

    def rounding_manifest(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "within_bounds": self.rounding_within_bounds,
            "engineers": [check.to_dict() for check in self.rounding],
        }


def period_export(
    period: Period,
    entries: list[Entry],
    roles: dict[str, str],
    engagements: dict[str, EngagementInfo],
    hours_before: dict[str, Decimal],
    findings: list[tuple[str, str, str]],
    rules: RollupRules,
    weekly_minimum: Decimal = Decimal(40),
    approved_engineers: Iterable[str] = (),
) -> PeriodExport:
    """The data files of one period's export (the caller adds adjustments, the manifest and README).

    ``hours_before``: approved billable hours per engagement exported for earlier periods.
    ``approved_engineers``: engineers released for the period, also those who logged nothing.
    """
    hours_lines, sums, billable_by = _approved_hours_lines(period, entries, engagements, rules.rounding)
    for engineer in approved_engineers:
        sums.setdefault(engineer, EngineerSums())
    all_findings = list(findings)
    utilization_rows = []
    rounding = []
    for engineer in sorted(sums):
        figures = sums[engineer]
        role = roles.get(engineer)
        result = utilization(engineer, role, figures.billable, figures.pto, period, targets=rules.role_targets)
        utilization_rows.append(
            {
                "engineer": engineer,
                "role": role or "",
                "period": period.key,
                "billable_hours": result.billable_hours.quantize(CENT),
                "logged_hours": figures.rounded.quantize(CENT),
                "available_hours": result.available_hours.quantize(CENT),
                "utilization_pct": _pct(result.utilization),
                "target_pct": _pct(result.target),
                "gap_pct": _pct(result.gap),
            }
        )
        rounding.append(
            rounding_check(engineer, rules.rounding, figures.seconds, figures.timelogs, figures.lines, figures.rounded)
        )
        if "-W" in period.key and figures.rounded < weekly_minimum:
            logged = "no time logged" if not figures.timelogs else f"{figures.rounded.quantize(CENT)} h logged"
            all_findings.append((engineer, "under_minimum", f"{logged}, minimum {weekly_minimum} h"))
    period_hours: dict[str, Decimal] = defaultdict(Decimal)
    revenue: dict[str, Decimal] = defaultdict(Decimal)
    for (engagement, engineer), hours in billable_by.items():
        period_hours[engagement] += hours
        billed_to = engagements.get(engagement)
        if billed_to is not None and billed_to.time_and_materials:
            rate = rules.rates.get(roles.get(engineer) or "")
            if rate is None:
                all_findings.append(
                    (engineer, "no_rate", f"no rate card rate for the role of {engineer} ({engagement})")
                )
            else:
                revenue[engagement] += hours * rate
    progress_rows = []
    for url in sorted(period_hours):
        info = engagements.get(url) or EngagementInfo(url, problem="not an issue of the engagements project")
        if info.problem:
            all_findings.append(("", "unknown_engagement", f"{url}: {info.problem}"))
        to_date = hours_before.get(url, Decimal(0)) + period_hours[url]
        done = progress(url, info.budgeted_hours, to_date)
        billed = info.time_and_materials and period_hours[url] != 0
        progress_rows.append(
            {
                "engagement": url,
                "opportunity_id": info.opportunity_id,
                "account": info.account,
                "budgeted_hours": _cents(info.budgeted_hours),
                "budget_source": info.budget_source,
                "period_hours": _cents(period_hours[url]),
                "approved_hours_to_date": _cents(done.approved_hours),
                "percent_complete": done.percent_complete,
                "over_budget": done.over_budget,
                "billing": "time_and_materials" if info.time_and_materials else "fixed_price",
                "hourly_rate": (revenue[url] / period_hours[url]).quantize(CENT) if billed else None,
                "currency": rules.currency if info.time_and_materials else "",
                "revenue_to_release": revenue[url].quantize(CENT) if info.time_and_materials else None,
            }
        )
    finding_rows = [
        {"engineer": engineer, "period": period.key, "kind": kind, "detail": detail}
        for engineer, kind, detail in sorted(set(all_findings))
    ]
    files = [
        csv_lines_file(
            "approved_hours.csv",
            "Approved hours per engineer, date and engagement: timelogs, unrounded minutes, billed hours.",
            APPROVED_HOURS_COLUMNS,
            hours_lines,
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
    return PeriodExport(files, rounding, rules.rounding)


def _cents(value: Decimal | None) -> Decimal | None:
    return None if value is None else value.quantize(CENT)


def row_count(export: ExportFile) -> int:
    """Data rows of a CSV export (its fields never hold line breaks)."""
    return max(export.content.count(b"\n") - 1, 0)


# --- locking -----------------------------------------------------------------------------------------
def as_exported_before_seconds(entry: Entry, legacy: dict[str, Decimal]) -> Entry:
    """A timelog exported before seconds were kept is unchanged when it still rounds to what was
    exported: compare it as that (no flood of 'edited' adjustments for 6-minute entries on upgrade)."""
    hours = legacy.get(entry.timelog_id)
    if hours is not None and round_hours(entry.seconds) == hours:
        return entry._replace(seconds=int(hours * 3600))
    return entry


def _stored_seconds(row: dict[str, Any]) -> int:
    """Seconds of an exported timelog; rows from before schema 008 have only their rounded hours."""
    if row.get("seconds") is not None:
        return int(row["seconds"])
    return int(Decimal(str(row["hours"])) * 3600)


class ExportLedger:
    """What was exported per (period, engineer), in the state store.

    Exported (period, engineer) pairs are locked: their timelogs are never re-exported. A later
    change to one of them is recorded once as an adjustment and reported in the next export.
    The files of each export are kept too, so a re-run with nothing new writes the same bytes.
    """

    def __init__(self, store: Any) -> None:
        self.store = store

    def locks(self) -> dict[str, dict[str, int]]:
        """period -> engineer -> approval level it was exported at."""
        locks: dict[str, dict[str, int]] = defaultdict(dict)
        for row in self.store.fetch_all("timesheets/all_locks"):
            locks[row["period"]][row["engineer"]] = int(row["approval_level"])
        return locks

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
                _stored_seconds(row),
            )
            for row in self.store.fetch_all("timesheets/exported_entries", {"period": period})
        ]

    def legacy_rounded_hours(self, period: str) -> dict[str, Decimal]:
        """timelog id -> the per-timelog rounded hours of rows exported before schema 008 kept seconds."""
        return {
            row["timelog_id"]: Decimal(str(row["hours"]))
            for row in self.store.fetch_all("timesheets/exported_entries", {"period": period})
            if row.get("seconds") is None
        }

    def billable_before(self, day: date, category: str, policy: str = "per_day") -> dict[str, Decimal]:
        """Exported hours per engagement of the category dated before ``day``, rounded per export
        line (engineer, day, engagement) under ``policy`` as the exports were."""
        seconds_by_line: dict[tuple[str, str, str], list[int]] = defaultdict(list)
        for row in self.store.fetch_all(
            "timesheets/billable_before", {"category": category, "before": day.isoformat()}
        ):
            seconds_by_line[(row["engagement"], row["engineer"], row["day"])].append(_stored_seconds(row))
        hours: dict[str, Decimal] = defaultdict(Decimal)
        for (engagement, _engineer, _day), seconds in seconds_by_line.items():
            hours[engagement] += line_hours(policy, seconds)
        return dict(hours)

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
                            "hours": str(exact_hours(entry.seconds)),
                            "seconds": entry.seconds,
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
        self, period: str, changes: list[Any], now: datetime, reported_in: str = ""
    ) -> list[dict[str, Any]]:
        """Store adjustments not seen before (pending unless ``reported_in``); return every one reported there."""
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
        return self.reported_in(reported_in) if reported_in else []

    def period_figures(self) -> dict[str, tuple[int, int]]:
        """period -> (timelog count, total seconds) GitLab reported when the period was last checked."""
        return {
            row["period"]: (int(row["timelog_count"]), int(row["total_seconds"]))
            for row in self.store.fetch_all("timesheets/period_figures")
        }

    def record_period_figures(self, figures: dict[str, tuple[int, int]], now: datetime) -> None:
        if figures:
            self.store.execute(
                "timesheets/record_period_figures",
                [
                    {"period": key, "timelog_count": count, "total_seconds": seconds, "checked_at": now.isoformat()}
                    for key, (count, seconds) in sorted(figures.items())
                ],
            )

    def pending_adjustments(self) -> list[dict[str, Any]]:
        return self.store.fetch_all("timesheets/pending_adjustments")

    def attach_pending(self, folder: str) -> list[dict[str, Any]]:
        """Report every pending adjustment in ``folder``; return all adjustments reported there."""
        self.store.execute("timesheets/attach_pending_adjustments", {"reported_in": folder})
        return self.reported_in(folder)

    def reported_in(self, folder: str) -> list[dict[str, Any]]:
        return self.store.fetch_all("timesheets/adjustments_reported_in", {"reported_in": folder})

    def stored_files(self, folder: str) -> list[ExportFile]:
        files = []
        for row in self.store.fetch_all("timesheets/stored_files", {"folder": folder}):
            content = zlib.decompress(base64.b64decode(row["content"]))
            columns = tuple(Column(name, text) for name, text in json.loads(row["columns"]))
            files.append(ExportFile(row["name"], content, row["description"], columns))
        return files

    def store_files(self, folder: str, files: list[ExportFile]) -> None:
        with self.store.transaction() as connection:
            self.store.execute("timesheets/forget_files", {"folder": folder}, connection)
            self.store.execute(
                "timesheets/store_file",
                [
                    {
                        "folder": folder,
                        "name": export.name,
                        "position": position,
                        "description": export.description,
                        "columns": json.dumps([[column.name, column.description] for column in export.columns]),
                        "sha256": export.sha256,
                        "content": base64.b64encode(zlib.compress(export.content, 6)).decode("ascii"),
                    }
                    for position, export in enumerate(files)
                ],
                connection,
            )


# --- the job -------------------------------------------------------------------------------------------
def refuse_unfinished(selection: Iterable[Period], today: date, business_timezone: str) -> None:
    """A manual run may not export, lock or mail a period that has not ended (a preview may look)."""
    from ps_integrations.exceptions import ConfigurationError

    unfinished = sorted(period for period in selection if period.end > today)
    if unfinished:
        names = ", ".join(
            f"{period.key} (ends {period.end.isoformat()} 00:00 {business_timezone})" for period in unfinished
        )
        raise ConfigurationError(
            f"refused: {names} has not ended (today is {today.isoformat()} in {business_timezone}); "
            "a period is exported, locked and mailed only once it is over. "
            "Trigger with preview=true to look at its hours without writing anything."
        )


def check_time_zones(schedule_timezone: str, config: RollupConfig) -> None:
    """The schedule (``PS_BUSINESS_TIMEZONE``) and the dating of timelogs (the variable's
    ``business_timezone``) must be one business time zone, or periods and runs disagree."""
    from ps_integrations.exceptions import ConfigurationError

    if ZoneInfo(schedule_timezone).key != ZoneInfo(config.business_timezone).key:
        raise ConfigurationError(
            f"business time zones disagree: the schedule runs in PS_BUSINESS_TIMEZONE={schedule_timezone!r} "
            f"but ps_timesheet_rollup_config.business_timezone is {config.business_timezone!r}. "
            "Set one: drop business_timezone from the variable (it follows PS_BUSINESS_TIMEZONE) "
            "or set PS_BUSINESS_TIMEZONE to the same zone."
        )


def default_business_timezone() -> str:
    """The business time zone the DAG is scheduled in (``PS_BUSINESS_TIMEZONE``, UTC by default)."""
    return os.environ.get("PS_BUSINESS_TIMEZONE", "UTC")


@dataclass(frozen=True)
class RollupConfig:
    group: str = "professional-services"
    engagements_project: str = "professional-services/engagements"
    time_tracking_project: str = "professional-services/time-tracking"
    business_timezone: str = field(default_factory=default_business_timezone)
    period_length: str = "week"
    period_label_prefix: str = "timesheet::"
    approval_labels: tuple[str, ...] = ApprovalLabels().levels
    release_level: int = 2
    weekly_minimum_hours: int = 40
    budget_field: str = "Budgeted_Hours__c"
    adjustment_lookback_weeks: int = 8
    finance_recipients: str = "finance@example.com"
    # any GitLab (issue #20): categories without epics, the server's time zone for date-only entries
    category_labels: dict[str, str] = field(default_factory=default_category_labels)
    category_issues: dict[str, str] = field(default_factory=dict)
    gitlab_server_timezone: str = "UTC"
    # certification issues (issue #20)
    certification_issues: bool = True
    managers: dict[str, str] = field(default_factory=dict)
    manager_job_titles: tuple[str, ...] = ("Delivery Manager",)
    time_tracking_epic: str = "Time Tracking"

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> RollupConfig:
        from ps_integrations.settings import settings_from_mapping

        config = settings_from_mapping(cls, data, "ps_timesheet_rollup_config")
        if config.period_length not in ("week", "month"):
            raise ValueError("ps_timesheet_rollup_config: period_length must be 'week' or 'month'")
        if not 1 <= config.release_level <= len(config.approval_labels):
            raise ValueError(
                f"ps_timesheet_rollup_config: release_level must be 1..{len(config.approval_labels)} "
                f"(the position of the releasing label in approval_labels)"
            )
        ZoneInfo(config.business_timezone)  # unknown zones fail here, naming the zone
        ZoneInfo(config.gitlab_server_timezone)
        for name, mapping in (("category_labels", config.category_labels), ("category_issues", config.category_issues)):
            unknown = sorted({str(category) for category in mapping.values()} - set(CATEGORIES))
            if unknown:
                raise ValueError(
                    f"ps_timesheet_rollup_config: {name} names unknown categories {unknown} "
                    f"(known: {', '.join(CATEGORIES)})"
                )
        return config

    @property
    def categories(self) -> CategoryRules:
        return CategoryRules(dict(self.category_labels), dict(self.category_issues))

    @property
    def labels(self) -> ApprovalLabels:
        return ApprovalLabels(self.period_label_prefix, self.approval_labels)


def periods_between(first: date, last: date, length: str) -> list[Period]:
    """Every period of ``length`` overlapping first..last (inclusive)."""
    periods, day = [], first
    while day <= last:
        period = period_of(day, length)
        periods.append(period)
        day = period.end
    return periods


def selected_periods(
    period: str | None, period_start: str | None, period_end: str | None, length: str
) -> list[Period] | None:
    """The periods a manual run asked for (``period`` or ``period_start``..``period_end``), else None."""
    from ps_integrations.exceptions import ConfigurationError

    if period:
        try:
            return [parse_period_key(period)]
        except ValueError as error:
            raise ConfigurationError(f"param period {period!r} is not like 2026-W44 or 2026-11") from error
    if period_start or period_end:
        if not (period_start and period_end):
            raise ConfigurationError("params period_start and period_end go together")
        first, last = date.fromisoformat(period_start), date.fromisoformat(period_end)
        if last < first:
            raise ConfigurationError(f"period_end {period_end} is before period_start {period_start}")
        return periods_between(first, last, length)
    return None


def contiguous_ranges(periods: Iterable[Period]) -> list[tuple[date, date]]:
    """Inclusive date ranges covering the periods, adjacent periods merged (one fetch per range)."""
    ranges: list[list[date]] = []
    for period in sorted(set(periods)):
        if ranges and period.start <= ranges[-1][1] + timedelta(days=1):
            ranges[-1][1] = max(ranges[-1][1], period.end - timedelta(days=1))
        else:
            ranges.append([period.start, period.end - timedelta(days=1)])
    return [(start, end) for start, end in ranges]


@dataclass
class Landed:
    folder: str
    paths: list[str]
    manifest_sha256: str
    rows: dict[str, int]
    adjustments: int


class TimesheetRollup:
    def __init__(
        self,
        gitlab: Any,
        salesforce: Any,
        store: Any,
        exports: Any,
        config: RollupConfig,
        rules: RollupRules,
        run_id: str,
    ) -> None:
        self.gitlab, self.salesforce, self.store, self.exports = gitlab, salesforce, store, exports
        self.config, self.rules, self.run_id = config, rules, run_id
        self.ledger = ExportLedger(store)
        self.summary = RunSummary(
            counts={
                "periods exported": 0,
                "periods unchanged": 0,
                "engineer-periods locked": 0,
                "entries": 0,
                "adjustments": 0,
                "mails sent": 0,
            }
        )

    def run(
        self, until: date, selection: list[Period] | None, today: date, now: datetime, preview: bool = False
    ) -> RunSummary:
        """Export every released period not exported yet that ended by ``until`` (or the selection).

        ``preview``: read and compute, write nothing (no export, lock, mail or issue); the only way
        to look at a period that has not ended.
        """
        if selection is not None and not preview:
            refuse_unfinished(selection, today, self.config.business_timezone)
        self.preview = preview
        with collector_paused():
            return self._run(min(until, today), selection, today, now)

    def _run(self, until: date, selection: list[Period] | None, today: date, now: datetime) -> RunSummary:
        config, summary = self.config, self.summary
        preview = self.preview
        members = self.gitlab.client.groups.get(config.group).members_all.list(get_all=True)
        roles = {m.username: role for m in members if (role := self.rules.role_of(getattr(m, "job_title", "")))}
        approval_issues = fetch_approval_issues(self.gitlab, config.time_tracking_project, config.labels)
        approvals = [read_approval(issue, config.labels, set(roles)) for issue in approval_issues]
        untrusted = [a for a in approvals if not a.trusted]
        for approval in untrusted:
            summary.note(f"untrusted approval issue #{approval.issue_iid}: {approval.problem}")
        released = approved_periods(approvals, config.release_level)
        locks = self.ledger.locks()
        if selection is not None:
            targets = sorted(set(selection))
        else:
            open_keys = {key for (engineer, key) in released if engineer not in locks.get(key, {})}
            targets = sorted(period for period in (parse_period_key(key) for key in open_keys) if period.end <= until)
        if not targets:
            summary.note(f"no newly approved period ended by {until.isoformat()}: nothing to export")
        just_ended = period_of(until - timedelta(days=1), config.period_length)
        last_ended = (
            just_ended
            if just_ended.end <= until
            else period_of(just_ended.start - timedelta(days=1), config.period_length)
        )
        checked, figures = self._locked_periods_to_check(locks, targets, until)
        certify = self._periods_to_certify(approval_issues, last_ended) if not self.preview else []
        wanted = sorted({*targets, *checked, just_ended, *certify})
        entries_by_period: dict[str, list[Entry]] = defaultdict(list)
        findings_by_period: dict[str, list[TimelogFinding]] = defaultdict(list)
        pages = 0
        capabilities = gitlab_capabilities(self.gitlab)
        summary.note(capabilities.describe())
        fetch_stats: dict[str, int] = {}
        for first, last in contiguous_ranges(wanted):
            nodes = fetch_timelogs(self.gitlab, config.group, first, last, capabilities, fetch_stats)
            pages += getattr(self.gitlab, "graphql_pages", 0)
            fetched, odd = to_entries(
                nodes,
                config.business_timezone,
                config.engagements_project,
                first,
                last,
                today,
                config.categories,
                config.gitlab_server_timezone,
            )
            for period, grouped in group_by_period(fetched, config.period_length).items():
                entries_by_period[period.key].extend(grouped)
            for period, odd_ones in group_by_period(odd, config.period_length).items():
                findings_by_period[period.key].extend(odd_ones)
        summary.note(f"GitLab GraphQL pages read: {pages}")
        if fetch_stats.get("duplicates"):
            summary.note(f"{fetch_stats['duplicates']} timelog(s) GitLab returned on two pages counted once")
        if preview:
            for period in targets or [just_ended]:
                self._preview(period, entries_by_period[period.key], findings_by_period[period.key], today)
            return summary

        for period in checked:
            locked = set(locks[period.key])
            legacy = self.ledger.legacy_rounded_hours(period.key)
            changes = adjustments(
                [e for e in self.ledger.exported_entries(period.key) if e.engineer in locked],
                [as_exported_before_seconds(e, legacy) for e in entries_by_period[period.key] if e.engineer in locked],
            )
            if changes:
                self.ledger.record_adjustments(period.key, changes, now)
        self.ledger.record_period_figures(figures, now)
        for period in sorted({*targets, just_ended}):
            self._report_unapproved(period, entries_by_period[period.key], released, locks.get(period.key, {}))

        directory: dict[str, EngagementInfo] | None = None
        landed: list[Landed] = []
        for period in targets:
            locked_here = dict(locks.get(period.key, {}))
            fresh_engineers = {e for (e, key) in released if key == period.key} - set(locked_here)
            folder = f"timesheets/{period.key}"
            if not fresh_engineers:
                stored = self.ledger.stored_files(folder)
                if stored:
                    self.exports.write_folder(folder, self._title(period), stored)
                    summary.add("periods unchanged")
                    summary.note(f"{folder}: nothing new, rewritten as exported")
                    continue
                if not locked_here:
                    summary.note(f"{period.key}: nobody's hours reached the release level, nothing exported")
                    continue
            if directory is None:
                directory = self._engagements()
            fresh = [e for e in entries_by_period[period.key] if e.engineer in fresh_engineers]
            entries = [e for e in self.ledger.exported_entries(period.key) if e.engineer in locked_here] + fresh
            findings = [
                (f.engineer, f.kind, f.problem)
                for f in findings_by_period[period.key]
                if f.engineer in fresh_engineers or f.engineer in locked_here or not f.engineer
            ]
            findings += [
                (a.engineer or "", "untrusted_approval", f"issue #{a.issue_iid}: {a.problem}")
                for a in untrusted
                if a.period == period.key
            ]
            built = period_export(
                period,
                entries,
                roles,
                directory,
                self.ledger.billable_before(period.start, BILLABLE_CATEGORY, self.rules.rounding),
                findings,
                self.rules,
                Decimal(config.weekly_minimum_hours),
                approved_engineers=[*locked_here, *fresh_engineers],
            )
            files = built.files
            if not built.rounding_within_bounds:
                for check in built.rounding:
                    if not check.within_bound:
                        summary.fail(
                            RecordFailure(
                                "timesheet export",
                                f"{period.key} {check.engineer}",
                                f"rounded {check.rounded_hours} h against {check.logged_hours} h logged: "
                                f"off by more than the {built.policy} bound {check.bound} h",
                            )
                        )
            reported = self.ledger.attach_pending(folder) if fresh_engineers else self.ledger.reported_in(folder)
            if reported:
                files.append(
                    csv_file(
                        "adjustments.csv",
                        "Changes to timelogs of locked periods, found since the previous export.",
                        ADJUSTMENT_COLUMNS,
                        reported,
                    )
                )
                summary.add("adjustments", len(reported))
                summary.note(f"{len(reported)} adjustment(s) to locked timelogs reported in {folder}/adjustments.csv")
            approval_state = sorted(
                [
                    {
                        "engineer": e,
                        "level": level,
                        "issue": self._issue_of(released, e, period),
                        "exported_before": True,
                    }
                    for e, level in locked_here.items()
                ]
                + [
                    {
                        "engineer": e,
                        "level": released[(e, period.key)].level,
                        "issue": self._issue_of(released, e, period),
                        "exported_before": False,
                    }
                    for e in fresh_engineers
                ],
                key=lambda row: str(row["engineer"]),
            )
            rows = {f.name: row_count(f) for f in files}
            manifest = json_file(
                "manifest.json",
                "Row counts, sha256 of each data file, and the approval state the export was built from.",
                {
                    "period": period.key,
                    "period_start": period.start,
                    "period_end_exclusive": period.end,
                    "business_timezone": config.business_timezone,
                    "files": {
                        f.name: {"sha256": f.sha256, "bytes": len(f.content), "rows": rows[f.name]} for f in files
                    },
                    "approvals": approval_state,
                    "rounding": built.rounding_manifest(),
                    "release_level": config.release_level,
                    "release_label": config.approval_labels[config.release_level - 1],
                },
            )
            paths = self.exports.write_folder(folder, self._title(period), [*files, manifest])
            self.ledger.store_files(folder, [*files, manifest])
            for engineer in sorted(fresh_engineers):
                self.ledger.lock(
                    period.key,
                    engineer,
                    released[(engineer, period.key)].level,
                    [e for e in fresh if e.engineer == engineer],
                    self.run_id,
                    now,
                )
                summary.add("engineer-periods locked")
            summary.add("periods exported")
            summary.add("entries", len(entries))
            landed.append(Landed(folder, paths, manifest.sha256, rows, len(reported)))
        pending = self.ledger.pending_adjustments()
        if pending:
            summary.note(f"{len(pending)} adjustment(s) to locked periods wait for the next export")
        if landed:
            summary.note(f"exports: {', '.join(item.paths[0].rsplit('/', 1)[0] for item in landed)}")
            self._mail_finance(landed)
        if certify:
            people = {member.username: member for member in members}
            for period in certify:
                self._certify(period, entries_by_period[period.key], roles, people, approval_issues, capabilities)
        return summary

    # --- certification issues ----------------------------------------------------------------------------
    def _periods_to_certify(self, issues: list[ApprovalIssue], last_ended: Period) -> list[Period]:
        """The latest period that has ended (a month is certified on the first run after it), and
        periods of certification issues the job opened that a manager has not certified yet (late
        changes still update their tables)."""
        if not self.config.certification_issues:
            return []
        periods = {last_ended}
        for issue in issues:
            marker = find_certification(issue.description)
            if marker and issue.state == "opened" and self.config.labels.levels[0] not in issue.labels:
                periods.add(parse_period_key(marker[1]))
        return sorted(periods)

    def _certify(
        self,
        period: Period,
        entries: list[Entry],
        roles: dict[str, str],
        people: dict[str, Any],
        issues: list[ApprovalIssue],
        capabilities: GitLabCapabilities,
    ) -> None:
        """Open once, per PS engineer, the issue the manager certifies; keep it current until certified."""
        import gitlab.exceptions

        from ps_integrations.exceptions import GitLabApiError

        labels = self.config.labels
        period_label = labels.period_prefix + period.key
        ours: dict[str, ApprovalIssue] = {}
        by_hand: dict[str, ApprovalIssue] = {}
        for issue in issues:
            marker = find_certification(issue.description)
            if marker is not None and marker[1] == period.key:
                ours.setdefault(marker[0], issue)
            elif marker is None and period_label in issue.labels and len(issue.assignees) == 1:
                by_hand[issue.assignees[0]] = issue
        per_engineer: dict[str, list[Entry]] = defaultdict(list)
        for entry in entries:
            per_engineer[entry.engineer].append(entry)
        for engineer in sorted(roles):
            rows = certification_rows(per_engineer.get(engineer, []), self.rules.rounding)
            try:
                if engineer in ours:
                    self._refresh_certification(ours[engineer], engineer, period, rows, per_engineer, capabilities)
                elif engineer in by_hand:
                    self.summary.add("certification issues already there")
                else:
                    self._open_certification(engineer, period, rows, per_engineer, people, issues, capabilities)
            except (GitLabApiError, gitlab.exceptions.GitlabError) as error:
                self.summary.fail(RecordFailure("GitLab", f"certification issue {period.key} {engineer}", str(error)))

    def _manager_of(self, engineer: str, people: dict[str, Any], issues: list[ApprovalIssue]) -> str | None:
        """The engineer's manager: configured (``managers``), else the group's only member with a
        manager job title, else the manager who wrote the engineer's latest approval issue."""
        configured = self.config.managers.get(engineer)
        if configured:
            return configured if configured in people else None
        titles = set(self.config.manager_job_titles)
        managers = {name for name, member in people.items() if getattr(member, "job_title", "") in titles}
        if len(managers) == 1:
            return next(iter(managers))
        written = [
            issue
            for issue in issues
            if issue.certified_engineer is None and issue.assignees == (engineer,) and issue.author in managers
        ]
        return max(written, key=lambda issue: issue.iid).author if written else None

    def _spreadsheet(self, engineer: str, period: Period, entries: list[Entry]) -> tuple[str, bytes]:
        from ps_integrations.xlsx import Sheet, workbook_bytes

        lines: dict[tuple[date, str, str], list[int]] = defaultdict(list)
        for entry in entries:
            lines[(entry.day, entry.engagement, entry.category)].append(entry.seconds)
        rows = [
            [
                day.isoformat(),
                engagement,
                category,
                len(seconds),
                float(logged_minutes(sum(seconds))),
                float(line_hours(self.rules.rounding, seconds)),
            ]
            for (day, engagement, category), seconds in sorted(lines.items())
        ]
        header = ["date", "engagement", "category", "timelogs", "logged_minutes", "hours"]
        moment = datetime.combine(period.end, datetime.min.time())
        content = workbook_bytes([Sheet(period.key, header, rows)], moment, f"Timesheet {period.key} {engineer}")
        return f"timesheet-{period.key}-{engineer.replace('/', '-')}.xlsx", content

    def _upload(self, engineer: str, period: Period, entries: list[Entry]) -> str:
        name, content = self._spreadsheet(engineer, period, entries)
        project = self.gitlab.client.projects.get(self.config.time_tracking_project, lazy=True)
        return str(project.upload(name, filedata=content)["markdown"])

    def _open_certification(
        self,
        engineer: str,
        period: Period,
        rows: list[CertificationRow],
        per_engineer: dict[str, list[Entry]],
        people: dict[str, Any],
        issues: list[ApprovalIssue],
        capabilities: GitLabCapabilities,
    ) -> None:
        manager = self._manager_of(engineer, people, issues)
        if manager is None:
            self.summary.fail(
                RecordFailure(
                    "GitLab",
                    f"certification issue {period.key} {engineer}",
                    "no manager known: set ps_timesheet_rollup_config.managers for this engineer "
                    "(or give exactly one group member a manager job title)",
                    field="managers",
                )
            )
            return
        spreadsheet = self._upload(engineer, period, per_engineer.get(engineer, []))
        description = certification_description(
            engineer, manager, period, rows, spreadsheet, self.config.labels, self.rules.rounding
        )
        project = self.gitlab.client.projects.get(self.config.time_tracking_project, lazy=True)
        created = project.issues.create(
            {
                "title": f"Timesheet {period.key} - {engineer}",
                "description": description,
                "labels": self.config.labels.period_prefix + period.key,
                "assignee_ids": [people[manager].id],
            }
        )
        self.summary.add("certification issues opened")
        if capabilities.issue_epic:
            self._link_to_epic(int(created.id), period, engineer)

    def _link_to_epic(self, issue_id: int, period: Period, engineer: str) -> None:
        """Under the time-tracking epic, where the instance has epics and the epic exists."""
        group = self.gitlab.client.groups.get(self.config.group, lazy=True)
        found = [
            e
            for e in group.epics.list(search=self.config.time_tracking_epic, get_all=True)
            if e.title == self.config.time_tracking_epic
        ]
        if not found:
            self.summary.note(f"no epic titled {self.config.time_tracking_epic!r}: certification issues not linked")
            return
        found[0].issues.create({"issue_id": issue_id})

    def _refresh_certification(
        self,
        issue: ApprovalIssue,
        engineer: str,
        period: Period,
        rows: list[CertificationRow],
        per_engineer: dict[str, list[Entry]],
        capabilities: GitLabCapabilities,
    ) -> None:
        """Before the manager certifies: a changed table is rewritten and a note says so (the note
        first, found again by its marker, so a crash in between never loses or repeats it)."""
        if capabilities.issue_epic and not issue.in_epic:
            self._link_to_epic(issue.issue_id, period, engineer)  # a run killed after the create
        if self.config.labels.levels[0] in issue.labels or issue.state != "opened":
            return
        marker = find_certification(issue.description)
        digest = certification_digest(rows)
        if marker is None or marker[2] == digest:
            self.summary.add("certification issues current")
            return
        project = self.gitlab.client.projects.get(self.config.time_tracking_project, lazy=True)
        remote = project.issues.get(issue.iid)
        note_marker = UPDATE_NOTE_MARKER.format(digest=digest)
        if not any(note_marker in (note.body or "") for note in remote.notes.list(get_all=True)):
            total = sum((row.hours for row in rows), Decimal("0.00"))
            remote.notes.create(
                {
                    "body": f"Time logged for {period.key} changed after this issue was opened: the table and the "
                    f"spreadsheet are updated ({total} h now). Please review them before certifying.\n\n{note_marker}"
                }
            )
        manager = issue.assignees[0] if issue.assignees else "the manager"
        remote.description = certification_description(
            engineer,
            manager,
            period,
            rows,
            self._upload(engineer, period, per_engineer.get(engineer, [])),
            self.config.labels,
            self.rules.rounding,
        )
        remote.save()
        self.summary.add("certification issues updated")

    def _preview(self, period: Period, entries: list[Entry], findings: list[TimelogFinding], today: date) -> None:
        """A dry look at a period (ended or not): hours per engineer under the rounding policy."""
        _lines, sums, _billable = _approved_hours_lines(period, entries, {}, self.rules.rounding)
        state = "ended" if period.end <= today else f"not ended (ends {period.end.isoformat()})"
        figures = ", ".join(f"{engineer} {sums[engineer].rounded} h" for engineer in sorted(sums)) or "no time logged"
        self.summary.note(f"preview {period.key}, {state}, nothing written: {figures}")
        excluded = [f for f in findings if f.kind in NOT_PAYABLE]
        if excluded:
            self.summary.note(f"preview {period.key}: {len(excluded)} timelog(s) not payable (future-dated/no issue)")

    @staticmethod
    def _issue_of(released: dict[tuple[str, str], Any], engineer: str, period: Period) -> int | None:
        approval = released.get((engineer, period.key))
        return approval.issue_iid if approval is not None else None

    def _locked_periods_to_check(
        self, locks: dict[str, dict[str, int]], targets: list[Period], until: date
    ) -> tuple[list[Period], dict[str, tuple[int, int]]]:
        """Locked periods to read in full for changes: every one inside the look-back window, and
        older ones whose timelog count or total in GitLab moved since they were last checked (or
        that were never checked), so no edit to a locked period is lost, however old.

        :return: those periods, and GitLab's figures of every locked or targeted period to record.
        """
        lookback = until - timedelta(weeks=self.config.adjustment_lookback_weeks)
        locked = [parse_period_key(key) for key in sorted(locks)]
        figures = fetch_period_figures(self.gitlab, self.config.group, sorted({*locked, *targets}))
        known = self.ledger.period_figures()
        recent = [period for period in locked if period.end > lookback]
        moved = [p for p in locked if p.end <= lookback and known.get(p.key) != figures[p.key]]
        if moved:
            self.summary.note(
                f"{len(moved)} locked period(s) before the {self.config.adjustment_lookback_weeks}-week look-back "
                f"re-read, their GitLab totals moved or were never checked: {', '.join(p.key for p in moved)}"
            )
        return [*recent, *moved], figures

    def _title(self, period: Period) -> str:
        last_day = period.end - timedelta(days=1)
        return f"Approved PS hours, {period.key} ({period.start.isoformat()} to {last_day.isoformat()})"

    def _report_unapproved(
        self, period: Period, entries: list[Entry], released: dict[tuple[str, str], Any], locked: dict[str, int]
    ) -> None:
        unapproved_seconds: dict[str, int] = defaultdict(int)
        for entry in entries:
            if (entry.engineer, period.key) not in released and entry.engineer not in locked:
                unapproved_seconds[entry.engineer] += entry.seconds
        unapproved = {engineer: exact_hours(seconds) for engineer, seconds in unapproved_seconds.items()}
        for engineer, hours in sorted(unapproved.items()):
            log.info("Unapproved, not exported: %s %s %s h", engineer, period.key, hours)
        if unapproved:
            total = sum(unapproved.values(), Decimal(0))
            self.summary.note(f"unapproved {period.key}: {len(unapproved)} engineer(s), {total} h not exported")

    def _engagements(self) -> dict[str, EngagementInfo]:
        from ps_integrations.exceptions import SalesforceApiError

        directory = engagement_directory(self.gitlab, self.config.engagements_project, self.rules)
        if self.salesforce is None:
            return directory
        ids = [info.opportunity_id for info in directory.values() if info.opportunity_id]
        try:
            budgets = opportunity_budgets(self.salesforce, ids, self.config.budget_field, self.rules)
        except SalesforceApiError as error:
            self.summary.fail(RecordFailure("Salesforce", f"budgets of {len(ids)} opportunities", str(error)))
            return directory
        return with_budgets(directory, budgets)

    def _mail_finance(self, landed: list[Landed]) -> None:
        """One mail per run listing the exports that landed; an export's version is mailed once."""
        from ps_integrations.mail import send_html_mail

        recipients = self.config.finance_recipients
        news = [item for item in landed if self.store.get_value(JOB, f"mail:{item.folder}") != item.manifest_sha256]
        if not news:
            self.summary.note("finance already mailed about these exports")
            return
        if not recipients:
            self.summary.note("no finance_recipients configured: no mail sent")
            return
        rows = "".join(
            f"<tr><td>{item.folder}</td><td align='right'>{item.rows.get('approved_hours.csv', 0)}</td>"
            f"<td align='right'>{item.rows.get('utilization.csv', 0)}</td>"
            f"<td align='right'>{item.adjustments}</td><td>{item.paths[0].rsplit('/', 1)[0]}</td></tr>"
            for item in news
        )
        adjustments_total = sum(item.adjustments for item in news)
        html = (
            f"<p>{len(news)} timesheet export(s) landed with approved PS hours"
            f"{f', including {adjustments_total} adjustment(s) to locked periods' if adjustments_total else ''}.</p>"
            "<table border='1' cellpadding='4'><tr><th>Period</th><th>Hour rows</th><th>Engineers</th>"
            f"<th>Adjustments</th><th>Location</th></tr>{rows}</table>"
            "<p>Each folder's README.md explains the columns; manifest.json lists row counts and checksums.</p>"
        )
        periods = ", ".join(item.folder.rsplit("/", 1)[-1] for item in news)
        send_html_mail(recipients, f"[ps-integrations] Approved PS hours: {periods}", html)
        for item in news:
            self.store.set_value(JOB, f"mail:{item.folder}", item.manifest_sha256)
        self.summary.add("mails sent")
