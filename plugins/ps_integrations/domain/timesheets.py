"""Timesheet roll-up rules (issue #8): periods, rounding, categories, utilization,
engagement progress and adjustments to locked periods. Pure: no I/O, no clock.

The domain core; ``timesheet_entries`` turns timelogs into entries, ``timesheet_export`` builds a
period's files, ``timesheet_certification`` the managers' certification issues and
``timesheet_approvals`` who approved which period.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from typing import NamedTuple, TypeVar

T = TypeVar("T")

QUARTER = Decimal("0.25")
HOURS_PER_DAY = Decimal(8)


# --- periods -----------------------------------------------------------------------------------------
@dataclass(frozen=True, order=True)
class Period:
    start: date
    end: date  # exclusive
    key: str  # 2026-W46 or 2026-11

    def days(self) -> list[date]:
        return [self.start + timedelta(days=offset) for offset in range((self.end - self.start).days)]


def period_of(day: date, length: str = "week") -> Period:
    """The period a business-local date falls in: ISO week (Monday start) or calendar month."""
    if length == "week":
        start = day - timedelta(days=day.weekday())
        year, week, _ = start.isocalendar()
        return Period(start, start + timedelta(days=7), f"{year}-W{week:02d}")
    if length == "month":
        start = day.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
        return Period(start, end, f"{start.year}-{start.month:02d}")
    raise ValueError(f"period length must be 'week' or 'month', not {length!r}")


def group_by_period(items: Iterable[T], length: str = "week") -> dict[Period, list[T]]:
    """Items with a ``day`` grouped by the period it falls in (one period lookup per distinct day)."""
    periods: dict[date, Period] = {}
    groups: dict[Period, list[T]] = defaultdict(list)
    for item in items:
        day = item.day  # type: ignore[attr-defined]
        period = periods.get(day)
        if period is None:
            period = periods[day] = period_of(day, length)
        groups[period].append(item)
    return dict(groups)


def parse_period_key(key: str) -> Period:
    """``2026-W46`` or ``2026-11`` -> the period."""
    if "-W" in key:
        year, week = key.split("-W")
        return period_of(date.fromisocalendar(int(year), int(week), 1), "week")
    year, month = key.split("-")
    return period_of(date(int(year), int(month), 1), "month")


def period_key_problem(key: str, length: str) -> str:
    """Why ``key`` is not a period of a roll-up whose periods are ``length`` long ("" when it is one):
    not a period at all, not written as the roll-up writes it, or a week in a monthly roll-up."""
    try:
        period = parse_period_key(key)
    except ValueError:
        return f"period {key!r} is not like 2026-W44 or 2026-11"
    if period.key != key:
        return f"period {key!r} is written {period.key!r}"
    kind = "week" if "-W" in key else "month"
    if kind != length:
        return f"period {key} is a {kind}, the roll-up's period_length is {length}"
    return ""


def periods_between(first: date, last: date, length: str) -> list[Period]:
    """Every period of ``length`` overlapping first..last (inclusive)."""
    periods, day = [], first
    while day <= last:
        period = period_of(day, length)
        periods.append(period)
        day = period.end
    return periods


def contiguous_ranges(periods: Iterable[Period]) -> list[tuple[date, date]]:
    """Inclusive date ranges covering the periods, adjacent periods merged (one fetch per range)."""
    ranges: list[list[date]] = []
    for period in sorted(set(periods)):
        if ranges and period.start <= ranges[-1][1] + timedelta(days=1):
            ranges[-1][1] = max(ranges[-1][1], period.end - timedelta(days=1))
        else:
            ranges.append([period.start, period.end - timedelta(days=1)])
    return [(start, end) for start, end in ranges]


# --- hours -------------------------------------------------------------------------------------------
CENT = Decimal("0.01")
ROUNDING_POLICIES = ("per_day", "per_entry", "none")
ROUNDING_ERROR_PER_ROUNDING = {"per_day": Decimal("0.125"), "per_entry": Decimal("0.125"), "none": Decimal("0.005")}


def round_hours(seconds: int) -> Decimal:
    """Seconds -> hours rounded to the nearest quarter hour, half up (away from zero for corrections)."""
    hours = Decimal(seconds) / Decimal(3600)
    quarters = (hours / QUARTER).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return (quarters * QUARTER).quantize(CENT) + 0  # + 0: a small correction is 0.00, never -0.00


def exact_hours(seconds: int) -> Decimal:
    """Seconds -> hours to the hundredth, half up: the 'none' policy and unrounded figures."""
    return (Decimal(seconds) / Decimal(3600)).quantize(CENT, rounding=ROUND_HALF_UP) + 0


def logged_minutes(seconds: int) -> Decimal:
    """Seconds -> minutes to the hundredth (GitLab stores seconds; minutes are what people log)."""
    return (Decimal(seconds) / Decimal(60)).quantize(CENT, rounding=ROUND_HALF_UP)


def line_hours(policy: str, entry_seconds: Sequence[int]) -> Decimal:
    """Hours of one export line (an engineer's day on one engagement) under a rounding policy.

    ``per_day`` rounds the line's total to the quarter hour (ten 6-minute entries are 1.00 h);
    ``per_entry`` rounds each timelog and adds them; ``none`` keeps the logged time to the hundredth.
    """
    if policy == "per_day":
        return round_hours(sum(entry_seconds))
    if policy == "per_entry":
        return sum((round_hours(seconds) for seconds in entry_seconds), Decimal(0)).quantize(CENT)
    if policy == "none":
        return exact_hours(sum(entry_seconds))
    raise ValueError(f"rounding must be one of {', '.join(ROUNDING_POLICIES)}, not {policy!r}")


def rounding_bound(policy: str, lines: int, timelogs: int) -> Decimal:
    """The most rounding can move an engineer's total: half a quarter hour per rounding done
    (per line for ``per_day``, per timelog for ``per_entry``), half a hundredth per line for ``none``."""
    roundings = timelogs if policy == "per_entry" else lines
    return ROUNDING_ERROR_PER_ROUNDING[policy] * roundings


@dataclass(frozen=True)
class RoundingCheck:
    """Rounded against logged hours for one engineer of an export (the manifest's check)."""

    engineer: str
    timelogs: int
    lines: int
    logged_minutes: Decimal
    logged_hours: Decimal  # unrounded, to the hundredth
    rounded_hours: Decimal
    difference: Decimal  # rounded - logged (exact)
    bound: Decimal

    @property
    def within_bound(self) -> bool:
        return abs(self.difference) <= self.bound

    def to_dict(self) -> dict[str, object]:
        return {
            "engineer": self.engineer,
            "timelogs": self.timelogs,
            "lines": self.lines,
            "logged_minutes": format(self.logged_minutes, "f"),
            "logged_hours": format(self.logged_hours, "f"),
            "rounded_hours": format(self.rounded_hours, "f"),
            "difference_hours": format(self.difference, "f"),
            "bound_hours": format(self.bound, "f"),
            "within_bound": self.within_bound,
        }


def rounding_check(
    engineer: str, policy: str, seconds: int, timelogs: int, lines: int, rounded: Decimal
) -> RoundingCheck:
    exact = Decimal(seconds) / Decimal(3600)
    return RoundingCheck(
        engineer,
        timelogs,
        lines,
        logged_minutes(seconds),
        exact_hours(seconds),
        rounded,
        (rounded - exact).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP),
        rounding_bound(policy, lines, timelogs),
    )


# --- categories --------------------------------------------------------------------------------------
BILLABLE_CATEGORY = "Project Work"
NON_BILLABLE = ("PS Internal", "Internal Assisted", "Global Company Meetings", "PTO/Holidays")
PTO_CATEGORY = "PTO/Holidays"


CATEGORIES = (BILLABLE_CATEGORY, *NON_BILLABLE)
CATEGORY_LABEL_PREFIX = "timesheet-category::"
UNCATEGORISED = "Uncategorised"


def category_of(epic_title: str | None, is_engagement: bool) -> str:
    """Engagement issues are Project Work; otherwise the issue's epic names the category."""
    return CategoryRules().category(is_engagement, epic_title, (), "")


def default_category_labels() -> dict[str, str]:
    """``timesheet-category::PS Internal`` (scoped: one category an issue) or the bare category name."""
    return {**{name: name for name in CATEGORIES}, **{CATEGORY_LABEL_PREFIX + name: name for name in CATEGORIES}}


@dataclass(frozen=True)
class CategoryRules:
    """How a timelog's issue names its time-tracking category, on any GitLab edition.

    In order: engagement issues are Project Work; a configured issue URL -> category mapping; the
    issue's parent (the epic, where the instance has epics) titled like a category; a category label.
    """

    labels: Mapping[str, str] = field(default_factory=default_category_labels)
    by_issue: Mapping[str, str] = field(default_factory=dict)

    def category(self, is_engagement: bool, parent_title: str | None, labels: Sequence[str], url: str) -> str:
        if is_engagement:
            return BILLABLE_CATEGORY
        mapped = self.by_issue.get(url) if url else None
        if mapped:
            return mapped
        if parent_title in CATEGORIES:
            return str(parent_title)
        for label in labels:
            named = self.labels.get(label)
            if named:
                return named
        return UNCATEGORISED


def is_billable(category: str) -> bool:
    return category == BILLABLE_CATEGORY


# --- utilization and progress ---------------------------------------------------------------------------
ROLE_TARGETS = {
    "engineer": Decimal("0.70"),
    "project_manager": Decimal("0.70"),
    "technical_architect": Decimal("0.55"),
    "trainer": Decimal("0.55"),
}


@dataclass(frozen=True)
class Utilization:
    engineer: str
    billable_hours: Decimal
    available_hours: Decimal
    utilization: Decimal | None  # share, 0-1+; None when nothing was available
    target: Decimal | None
    gap: Decimal | None  # utilization - target


def working_days(period: Period, holidays: Iterable[date] = ()) -> int:
    off = set(holidays)
    return sum(1 for day in period.days() if day.weekday() < 5 and day not in off)


@lru_cache(maxsize=256)
def _weekdays(period: Period) -> int:
    """Working days of a period without holidays (asked once per engineer: cached)."""
    return working_days(period)


def utilization(
    engineer: str,
    role: str | None,
    billable_hours: Decimal,
    pto_hours: Decimal,
    period: Period,
    holidays: Iterable[date] = (),
    targets: Mapping[str, Decimal] = ROLE_TARGETS,
) -> Utilization:
    """Available = working days x 8 h minus PTO/holidays logged; utilization = billable / available."""
    off = tuple(holidays)
    days = working_days(period, off) if off else _weekdays(period)
    available = max(Decimal(days) * HOURS_PER_DAY - pto_hours, Decimal(0))
    share = (billable_hours / available).quantize(Decimal("0.0001")) if available else None
    target = targets.get(role or "")
    gap = (share - target).quantize(Decimal("0.0001")) if share is not None and target is not None else None
    return Utilization(engineer, billable_hours, available, share, target, gap)


@dataclass(frozen=True)
class RollupRules:
    """The reviewed rules of include/ps_timesheet_rollup/rules.yml."""

    role_targets: Mapping[str, Decimal]
    job_titles: Mapping[str, str]
    currency: str
    rates: Mapping[str, Decimal]
    time_and_materials_types: tuple[str, ...]
    sku_hours: Mapping[str, Decimal]
    rounding: str = "per_day"

    @classmethod
    def from_mapping(cls, data: Mapping[str, object]) -> RollupRules:
        def decimals(name: str, value: object) -> dict[str, Decimal]:
            if not isinstance(value, Mapping):
                raise ValueError(f"timesheet rules: {name} must be a mapping")
            try:
                return {str(key): Decimal(str(number)) for key, number in value.items()}
            except ArithmeticError as error:
                raise ValueError(f"timesheet rules: {name} has a value that is not a number") from error

        rate_card = data.get("rate_card") or {}
        if not isinstance(rate_card, Mapping):
            raise ValueError("timesheet rules: rate_card must be a mapping with currency and rates")
        titles = data.get("job_titles") or {}
        types = data.get("time_and_materials_types") or ()
        if not isinstance(titles, Mapping) or not isinstance(types, list | tuple):
            raise ValueError("timesheet rules: job_titles must be a mapping, time_and_materials_types a list")
        rounding = str(data.get("rounding") or "per_day")
        if rounding not in ROUNDING_POLICIES:
            raise ValueError(
                f"timesheet rules: rounding must be one of {', '.join(ROUNDING_POLICIES)}, not {rounding!r}"
            )
        return cls(
            rounding=rounding,
            role_targets=decimals("role_targets", data.get("role_targets") or {}),
            job_titles={str(title): str(role) for title, role in titles.items()},
            currency=str(rate_card.get("currency") or "USD"),
            rates=decimals("rate_card.rates", rate_card.get("rates") or {}),
            time_and_materials_types=tuple(str(name) for name in types),
            sku_hours=decimals("sku_hours", data.get("sku_hours") or {}),
        )

    def role_of(self, job_title: str | None) -> str | None:
        """GitLab job title (or a role name) -> role; None for people outside PS delivery."""
        if not job_title:
            return None
        if job_title in self.role_targets:
            return job_title
        return self.job_titles.get(job_title)

    def budget_from_skus(self, line_items: Iterable[tuple[str | None, Decimal]]) -> Decimal | None:
        """Sum of quantity x hours per SKU; None when no SKU of the deal has hours on the table."""
        known = [(sku, quantity) for sku, quantity in line_items if sku and sku in self.sku_hours]
        if not known:
            return None
        return sum((self.sku_hours[sku] * quantity for sku, quantity in known), Decimal(0))


@dataclass(frozen=True)
class Progress:
    engagement: str
    budgeted_hours: Decimal | None
    approved_hours: Decimal
    percent_complete: Decimal | None  # capped at 100
    over_budget: bool


def progress(engagement: str, budgeted_hours: Decimal | None, approved_hours: Decimal) -> Progress:
    if not budgeted_hours:
        return Progress(engagement, budgeted_hours, approved_hours, None, False)
    raw = approved_hours / budgeted_hours * 100
    percent = min(raw, Decimal(100)).quantize(Decimal("0.1")) + 0  # + 0: a tiny correction is 0.0, not -0.0
    return Progress(engagement, budgeted_hours, approved_hours, percent, raw > 100)


# --- locking and adjustments ---------------------------------------------------------------------------
class Entry(NamedTuple):
    """One timelog as logged, unrounded (a named tuple: the roll-up creates a million of them).
    Rounding happens per export line (see ``line_hours``), never per timelog behind finance's back."""

    timelog_id: str
    engineer: str
    day: date
    engagement: str
    category: str
    seconds: int

    @property
    def hours(self) -> Decimal:
        """Logged hours to the hundredth (unrounded to the quarter hour)."""
        return exact_hours(self.seconds)


@dataclass(frozen=True)
class Adjustment:
    timelog_id: str
    engineer: str
    change: str  # added, removed, edited
    original_hours: Decimal | None
    new_hours: Decimal | None
    original_day: date | None
    new_day: date | None


def adjustments(exported: Sequence[Entry], current: Sequence[Entry]) -> list[Adjustment]:
    """Differences between what a locked period exported and what the timelogs say now."""
    before = {entry.timelog_id: entry for entry in exported}
    after = {entry.timelog_id: entry for entry in current}
    changes = []
    for timelog_id in sorted(set(before) | set(after)):
        old, new = before.get(timelog_id), after.get(timelog_id)
        if old is None and new is not None:
            changes.append(Adjustment(timelog_id, new.engineer, "added", None, new.hours, None, new.day))
        elif new is None and old is not None:
            changes.append(Adjustment(timelog_id, old.engineer, "removed", old.hours, None, old.day, None))
        elif (
            old is not None
            and new is not None
            and (old.seconds, old.day, old.engagement) != (new.seconds, new.day, new.engagement)
        ):
            changes.append(Adjustment(timelog_id, new.engineer, "edited", old.hours, new.hours, old.day, new.day))
    return changes


@dataclass
class Totals:
    by_engineer: dict[str, Decimal] = field(default_factory=dict)
    billable: dict[str, Decimal] = field(default_factory=dict)
    pto: dict[str, Decimal] = field(default_factory=dict)
    corrections: list[Entry] = field(default_factory=list)


def totals(entries: Iterable[Entry]) -> Totals:
    """Logged (unrounded) hours per engineer, billable and PTO too, to the hundredth; negative
    corrections netted and listed. Sums whole seconds and converts once per engineer."""
    logged: dict[str, int] = defaultdict(int)
    billable: dict[str, int] = defaultdict(int)
    pto: dict[str, int] = defaultdict(int)
    corrections = []
    for entry in entries:
        seconds = entry.seconds
        logged[entry.engineer] += seconds
        if entry.category == BILLABLE_CATEGORY:
            billable[entry.engineer] += seconds
        elif entry.category == PTO_CATEGORY:
            pto[entry.engineer] += seconds
        if seconds < 0:
            corrections.append(entry)
    return Totals(
        {name: exact_hours(seconds) for name, seconds in logged.items()},
        {name: exact_hours(seconds) for name, seconds in billable.items()},
        {name: exact_hours(seconds) for name, seconds in pto.items()},
        corrections,
    )
