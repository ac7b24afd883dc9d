"""Engagement close-out (issue #22): the cost-vs-actual analysis of an engagement and the progress
milestone of an open one. Pure: no I/O, no clock.

Budget: the opportunity's amount (the SOW's price; time-and-materials deals earn approved hours x the
rate card's bill rate instead) and budgeted hours (the opportunity's field, else quantity x hours
per SKU). Actuals: approved hours as the timesheet roll-up exported them, by role and category, plus
adjustments to locked periods; hours logged but not exported yet are listed apart and never costed.
Cost: hours x the hourly cost of the engineer's role. Margin: (revenue - cost) / revenue against the
target (30%).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from ps_integrations.exceptions import ConfigurationError

CENT = Decimal("0.01")
TENTH = Decimal("0.1")
HUNDRED = Decimal(100)
DEFAULT_TARGET_MARGIN = Decimal("0.30")
DEFAULT_MILESTONES = (25, 50, 75, 100)
MAX_LISTED = 10  # adjustments named one by one in the notes


def round_money(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def round_pct(value: Decimal) -> Decimal:
    return value.quantize(TENTH, rounding=ROUND_HALF_UP)


# --- inputs ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CostRates:
    """Hourly cost per role (what an hour of the role costs the company), in one currency."""

    currency: str
    rates: Mapping[str, Decimal]
    target_margin: Decimal = DEFAULT_TARGET_MARGIN

    @classmethod
    def from_mapping(cls, data: Mapping[str, object]) -> CostRates:
        section = data.get("cost_rates")
        if not isinstance(section, Mapping) or not isinstance(section.get("rates"), Mapping):
            raise ConfigurationError("close-out rules: cost_rates must be a mapping with currency and rates")
        try:
            rates = {str(role): Decimal(str(rate)) for role, rate in section["rates"].items()}
            target = Decimal(str(data.get("target_margin", DEFAULT_TARGET_MARGIN)))
        except ArithmeticError as error:
            raise ConfigurationError("close-out rules: a cost rate or the target margin is not a number") from error
        if any(rate < 0 for rate in rates.values()) or not Decimal(0) <= target < Decimal(1):
            raise ConfigurationError("close-out rules: cost rates must be >= 0 and target_margin in [0, 1)")
        return cls(str(section.get("currency") or "USD"), rates, target)


@dataclass(frozen=True)
class Budget:
    amount: Decimal | None  # the SOW amount on the opportunity
    currency: str
    hours: Decimal | None
    hours_source: str  # "opportunity", "sku_table" or ""


@dataclass(frozen=True)
class ApprovedTime:
    """Approved hours of one engineer on the engagement in one category (from the roll-up's export)."""

    engineer: str
    role: str  # "" when the engineer's job title maps to no role
    category: str
    hours: Decimal


@dataclass(frozen=True)
class Adjustment:
    """A change to a locked (already exported) timelog of the engagement, found by the roll-up."""

    period: str
    timelog_id: str
    engineer: str
    change: str  # added, removed, edited
    delta_hours: Decimal
    engagement: str = ""  # the engagement issue the timelog was exported under


def adjustment_delta(change: str, original_hours: Decimal, new_hours: Decimal) -> Decimal:
    """The hours an adjustment adds to the exported total (negative when it takes away)."""
    return -original_hours if change == "removed" else new_hours - original_hours


def latest_per_timelog(adjustments: Iterable[Adjustment]) -> list[Adjustment]:
    """Adjustments oldest first in; the latest of each timelog out, by period and timelog."""
    latest = {(adjustment.period, adjustment.timelog_id): adjustment for adjustment in adjustments}
    return [latest[key] for key in sorted(latest)]


@dataclass(frozen=True)
class Problem:
    """Bad input: which field of which system is missing or wrong."""

    system: str
    field: str
    reason: str


# --- output ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CostLine:
    role: str
    category: str
    hours: Decimal
    cost_rate: Decimal
    cost: Decimal  # hours x rate, unrounded
    bill_rate: Decimal | None = None  # time and materials only
    revenue: Decimal | None = None

    @property
    def cost_rounded(self) -> Decimal:
        return round_money(self.cost)


@dataclass(frozen=True)
class Analysis:
    engagement: str
    currency: str
    billing: str  # fixed_price or time_and_materials
    budget_amount: Decimal | None
    budgeted_hours: Decimal | None
    hours_source: str
    lines: tuple[CostLine, ...]
    approved_hours: Decimal
    unapproved_hours: Decimal
    adjustment_hours: Decimal
    revenue: Decimal | None
    cost: Decimal
    margin: Decimal | None  # revenue - cost
    margin_pct: Decimal | None  # unrounded percent
    target_margin_pct: Decimal
    percent_complete: Decimal | None  # unrounded, may exceed 100
    notes: tuple[str, ...]

    @property
    def cost_rounded(self) -> Decimal:
        return round_money(self.cost)

    @property
    def margin_pct_rounded(self) -> Decimal | None:
        return None if self.margin_pct is None else round_pct(self.margin_pct)

    @property
    def percent_complete_rounded(self) -> Decimal | None:
        return None if self.percent_complete is None else round_pct(self.percent_complete)

    @property
    def below_target(self) -> bool:
        return self.margin_pct is not None and self.margin_pct < self.target_margin_pct


class InvalidEngagement(ValueError):
    """The analysis cannot be made: the problems say which fields are missing."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__("; ".join(f"{p.system} {p.field}: {p.reason}" for p in problems))
        self.problems = tuple(problems)


# --- the analysis ------------------------------------------------------------------------------------
def check_inputs(
    budget: Budget,
    approved: Iterable[ApprovedTime],
    cost_rates: CostRates,
    bill_rates: Mapping[str, Decimal] | None,
    time_and_materials: bool,
    budget_field: str = "Budgeted_Hours__c",
) -> list[Problem]:
    """Every missing input, so one run names them all."""
    problems: list[Problem] = []
    if time_and_materials:
        pass  # revenue comes from the hours; the amount is not needed
    elif budget.amount is None:
        problems.append(Problem("Salesforce", "Opportunity.Amount", "no SOW amount on the opportunity"))
    if budget.hours is None:
        problems.append(
            Problem(
                "Salesforce",
                f"Opportunity.{budget_field}",
                "no budgeted hours: the field is empty and no SKU of the deal has hours in rules.yml sku_hours",
            )
        )
    if budget.currency and budget.currency != cost_rates.currency:
        problems.append(
            Problem(
                "Salesforce",
                "Opportunity.CurrencyIsoCode",
                f"the deal is in {budget.currency}, the cost rates in {cost_rates.currency} (no conversion)",
            )
        )
    for time in sorted(set(approved), key=lambda t: (t.engineer, t.role)):
        if not time.role:
            problems.append(Problem("GitLab", f"user {time.engineer} job_title", "job title maps to no role"))
        elif time.role not in cost_rates.rates:
            problems.append(
                Problem("close-out rules", f"cost_rates.rates.{time.role}", f"no hourly cost for role {time.role}")
            )
        elif time_and_materials and (bill_rates is None or time.role not in bill_rates):
            problems.append(
                Problem("timesheet rules", f"rate_card.rates.{time.role}", f"no bill rate for role {time.role}")
            )
    return _unique(problems)


def _unique(problems: list[Problem]) -> list[Problem]:
    seen: dict[tuple[str, str], Problem] = {}
    for problem in problems:
        seen.setdefault((problem.system, problem.field), problem)
    return list(seen.values())


def analyse(
    engagement: str,
    budget: Budget,
    approved: Sequence[ApprovedTime],
    adjustments: Sequence[Adjustment],
    unapproved_hours: Decimal,
    cost_rates: CostRates,
    time_and_materials: bool = False,
    bill_rates: Mapping[str, Decimal] | None = None,
    roles: Mapping[str, str] | None = None,
    budget_field: str = "Budgeted_Hours__c",
) -> Analysis:
    """The cost-vs-actual analysis of one engagement.

    ``approved`` holds the hours as exported; ``adjustments`` change them afterwards (their
    engineers' roles come from ``roles``). Raises ``InvalidEngagement`` naming every missing input.
    """
    roles = roles or {}
    adjusted = [
        ApprovedTime(a.engineer, roles.get(a.engineer, ""), "Adjustment after lock", a.delta_hours)
        for a in adjustments
        if a.delta_hours
    ]
    everything = [*approved, *adjusted]
    problems = check_inputs(budget, everything, cost_rates, bill_rates, time_and_materials, budget_field)
    if problems:
        raise InvalidEngagement(problems)

    hours_by: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for time in everything:
        hours_by[(time.role, time.category)] += time.hours
    lines = []
    for (role, category), hours in sorted(hours_by.items()):
        rate = cost_rates.rates[role]
        bill = (bill_rates or {}).get(role) if time_and_materials else None
        lines.append(CostLine(role, category, hours, rate, hours * rate, bill, None if bill is None else hours * bill))

    approved_hours = sum((line.hours for line in lines), Decimal(0))
    adjustment_hours = sum((a.delta_hours for a in adjustments), Decimal(0))
    cost = sum((line.cost for line in lines), Decimal(0))
    if time_and_materials:
        revenue: Decimal | None = sum((line.revenue or Decimal(0) for line in lines), Decimal(0))
    else:
        revenue = budget.amount
    margin = None if revenue is None else revenue - cost
    margin_pct = None if not revenue or margin is None else margin / revenue * HUNDRED
    percent = None if not budget.hours else approved_hours / budget.hours * HUNDRED
    target_pct = cost_rates.target_margin * HUNDRED

    notes = []
    if percent is not None and percent > HUNDRED:
        notes.append(
            f"overrun: {approved_hours} approved hours against a budget of {budget.hours} "
            f"({round_pct(percent)}% of budget)"
        )
    if budget.hours is not None and not budget.hours:
        notes.append("zero budgeted hours: percent complete not computed")
    if revenue is not None and not revenue:
        notes.append("zero revenue: margin percent not computed")
    if margin_pct is not None and margin_pct < target_pct:
        notes.append(f"gross margin {round_pct(margin_pct)}% is below the {round_pct(target_pct)}% target")
    if unapproved_hours:
        notes.append(f"{unapproved_hours} hours logged but not approved yet (not costed)")
    if not approved_hours:
        notes.append("no approved hours: the timesheet roll-up exported none for this engagement")
    if adjustments:
        changed = ", ".join(f"{a.change} {a.timelog_id} ({a.delta_hours:+})" for a in adjustments[:MAX_LISTED])
        if len(adjustments) > MAX_LISTED:
            changed += f" and {len(adjustments) - MAX_LISTED} more"
        notes.append(f"adjustments after lock: {len(adjustments)} ({changed}), net {adjustment_hours:+} hours")
    if budget.hours_source == "sku_table":
        notes.append("budgeted hours from the SKU hours table (the opportunity has none)")
    return Analysis(
        engagement=engagement,
        currency=cost_rates.currency,
        billing="time_and_materials" if time_and_materials else "fixed_price",
        budget_amount=budget.amount,
        budgeted_hours=budget.hours,
        hours_source=budget.hours_source,
        lines=tuple(lines),
        approved_hours=approved_hours,
        unapproved_hours=unapproved_hours,
        adjustment_hours=adjustment_hours,
        revenue=revenue,
        cost=cost,
        margin=margin,
        margin_pct=margin_pct,
        target_margin_pct=target_pct,
        percent_complete=percent,
        notes=tuple(notes),
    )


# --- progress labels ---------------------------------------------------------------------------------
def milestone_reached(
    approved_hours: Decimal, budgeted_hours: Decimal | None, milestones: Sequence[int] = DEFAULT_MILESTONES
) -> int | None:
    """The highest milestone (percent of budgeted hours) the approved hours reached; None below the first."""
    if not budgeted_hours or budgeted_hours <= 0:
        return None
    percent = approved_hours / budgeted_hours * HUNDRED
    reached = [m for m in sorted(milestones) if percent >= m]
    return reached[-1] if reached else None


@dataclass(frozen=True)
class LabelChange:
    add: tuple[str, ...]
    remove: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return not self.add and not self.remove


def scope_of(label: str) -> str | None:
    """``progress::25`` -> ``progress``; ``a::b::c`` -> ``a::b`` (GitLab's rule); unscoped -> None."""
    return label.rsplit("::", 1)[0] if "::" in label else None


def progress_label_change(current: Iterable[str], wanted: str | None, scope: str) -> LabelChange:
    """Labels to add and remove so the issue carries exactly ``wanted`` in ``scope`` (none when None).

    Only labels of ``scope`` are removed; labels of every other scope stay.
    """
    present = [label for label in current if scope_of(label) == scope]
    add = (wanted,) if wanted and wanted not in present else ()
    remove = tuple(label for label in present if label != wanted)
    return LabelChange(add, remove)
