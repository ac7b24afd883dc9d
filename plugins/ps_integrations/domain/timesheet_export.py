"""One period's finance export of the timesheet roll-up (issue #8, #20, #23): the engagements'
budgets, approved hours rounded per engineer, day and engagement, utilization, engagement progress,
findings, and the manifest's rounding check. Pure: records in, export files out.

One implementation of each figure, the fast one: cells are rendered once per distinct value and
per-engineer sums kept while the sorted lines go by (a large team's year has a million timelogs).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal
from itertools import groupby
from operator import attrgetter, itemgetter
from typing import Any

from ps_integrations.domain.timesheets import (
    CENT,
    PTO_CATEGORY,
    Entry,
    Period,
    RollupRules,
    RoundingCheck,
    exact_hours,
    is_billable,
    line_hours,
    logged_minutes,
    progress,
    round_hours,
    rounding_check,
    utilization,
)
from ps_integrations.exports import Column, ExportFile, csv_field, csv_file, csv_lines_file, format_value


# --- engagements and their budgets ------------------------------------------------------------------------
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
    budget_unavailable: str = ""  # the budget lookup failed: no export may show this engagement


@dataclass(frozen=True)
class Budget:
    hours: Decimal | None
    sku: str  # the main SKU: the largest line item
    source: str  # opportunity, sku_table or empty


def engagement_budget(field_value: str | None, lines: Iterable[tuple[str, str, str]], rules: RollupRules) -> Budget:
    """The opportunity's budget field when set, else quantity x hours per SKU from the rules' table;
    the main SKU is the line with the largest total price."""
    parsed = [(sku, Decimal(quantity or "0"), Decimal(total or "0")) for sku, quantity, total in lines]
    main = max(parsed, key=lambda line: (line[2], line[0]), default=("", Decimal(0), Decimal(0)))
    if field_value not in (None, ""):
        return Budget(Decimal(str(field_value)), main[0], "opportunity")
    hours = rules.budget_from_skus((sku or None, quantity) for sku, quantity, _ in parsed)
    return Budget(hours, main[0], "sku_table" if hours is not None else "")


def with_budgets(directory: Mapping[str, EngagementInfo], budgets: Mapping[str, Budget]) -> dict[str, EngagementInfo]:
    """The directory with each opportunity's budget (keyed by 18- or 15-character Id)."""
    out = {}
    for url, info in directory.items():
        if not info.opportunity_id:
            out[url] = info
            continue
        known = budgets.get(info.opportunity_id) or budgets.get(info.opportunity_id[:15])
        if known is None:
            out[url] = replace(info, problem=f"opportunity {info.opportunity_id} not found in Salesforce")
        else:
            out[url] = replace(info, sku=known.sku, budgeted_hours=known.hours, budget_source=known.source)
    return out


def without_budgets(directory: Mapping[str, EngagementInfo], reason: str) -> dict[str, EngagementInfo]:
    """The directory when the budget lookup failed: every engagement with an opportunity is marked."""
    return {
        url: replace(info, budget_unavailable=reason) if info.opportunity_id else info
        for url, info in directory.items()
    }


def engagements_without_budget(
    entries: Iterable[Entry], directory: Mapping[str, EngagementInfo]
) -> list[EngagementInfo]:
    """Engagements of the entries whose budget could not be read (sorted by URL, each once)."""
    urls = {entry.engagement for entry in entries}
    return [directory[url] for url in sorted(urls) if url in directory and directory[url].budget_unavailable]


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
        "under_minimum, closed_engagement, unknown_engagement, future_dated, no_issue, untrusted_approval, no_rate, "
        "changed_after_certification",
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


def hours_per_engagement(entries: Iterable[Entry], policy: str) -> dict[str, Decimal]:
    """Hours per engagement, rounded per export line (engineer, day, engagement) under ``policy`` as
    approved_hours.csv rounds them (the engagement progress's hours exported before a period)."""
    seconds_by_line: dict[tuple[str, str, date], list[int]] = defaultdict(list)
    for entry in entries:
        seconds_by_line[(entry.engagement, entry.engineer, entry.day)].append(entry.seconds)
    hours: dict[str, Decimal] = defaultdict(Decimal)
    for (engagement, _engineer, _day), seconds in seconds_by_line.items():
        hours[engagement] += line_hours(policy, seconds)
    return dict(hours)


def approved_hours_sums(period: Period, entries: list[Entry], policy: str) -> dict[str, EngineerSums]:
    """Each engineer's figures of a period as its approved_hours.csv would sum them."""
    return _approved_hours_lines(period, entries, {}, policy)[1]


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
