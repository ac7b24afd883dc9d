"""The close-out analysis and progress milestones, against numbers worked out by hand."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from ps_integrations.domain.engagement_closeout import (
    Adjustment,
    ApprovedTime,
    Budget,
    CostRates,
    InvalidEngagement,
    analyse,
    milestone_reached,
    progress_label_change,
)
from ps_integrations.exceptions import ConfigurationError

RATES = CostRates("USD", {"engineer": D(120), "project_manager": D(110), "technical_architect": D(150)})
BUDGET = Budget(D(50000), "USD", D(200), "opportunity")
WORK = [
    ApprovedTime("ada", "engineer", "Project Work", D("100.25")),
    ApprovedTime("grace", "engineer", "Project Work", D("40")),
    ApprovedTime("alan", "project_manager", "Project Work", D("10.5")),
]


def test_fixed_price_analysis_by_hand() -> None:
    analysis = analyse("https://gitlab/e/1", BUDGET, WORK, [], D(0), RATES)
    # engineer 140.25 h x 120 = 16,830.00; project manager 10.5 h x 110 = 1,155.00
    assert [(line.role, line.hours, line.cost) for line in analysis.lines] == [
        ("engineer", D("140.25"), D("16830.00")),
        ("project_manager", D("10.5"), D("1155.0")),
    ]
    assert analysis.approved_hours == D("150.75")
    assert analysis.cost == D("17985.00")
    assert analysis.margin == D("32015.00")
    # 32,015 / 50,000 = 64.03 %; 150.75 / 200 = 75.375 % -> 75.4 (half up)
    assert analysis.margin_pct == D("64.03")
    assert analysis.margin_pct_rounded == D("64.0")
    assert analysis.percent_complete == D("75.375")
    assert analysis.percent_complete_rounded == D("75.4")
    assert analysis.target_margin_pct == D("30.00")
    assert not analysis.below_target
    assert analysis.notes == ()


def test_overrun_below_target_unapproved_and_adjustments_are_noted() -> None:
    budget = Budget(D(20000), "USD", D(100), "sku_table")
    adjustments = [
        Adjustment("2026-W40", "77", "ada", "edited", D("-2.5")),
        Adjustment("2026-W41", "80", "ada", "removed", D("-1")),
    ]
    analysis = analyse("e", budget, WORK, adjustments, D("6.75"), RATES, roles={"ada": "engineer"})
    # 150.75 - 3.5 = 147.25 h; cost 17,985 - 3.5 x 120 = 17,565; margin 2,435 / 20,000 = 12.175 %
    assert analysis.approved_hours == D("147.25")
    assert analysis.adjustment_hours == D("-3.5")
    assert analysis.cost == D("17565.00")
    assert analysis.margin_pct == D("12.175")
    assert analysis.margin_pct_rounded == D("12.2")
    assert analysis.below_target
    assert analysis.percent_complete == D("147.25")
    assert ("engineer", "Adjustment after lock", D("-3.5")) in [(x.role, x.category, x.hours) for x in analysis.lines]
    text = " | ".join(analysis.notes)
    assert "overrun: 147.25 approved hours against a budget of 100 (147.3% of budget)" in text
    assert "below the 30.0% target" in text
    assert "6.75 hours logged but not approved yet" in text
    assert "adjustments after lock: 2" in text and "net -3.5 hours" in text
    assert "SKU hours table" in text


def test_zero_budget_computes_no_percentages() -> None:
    analysis = analyse("e", Budget(D(0), "USD", D(0), "opportunity"), WORK, [], D(0), RATES)
    assert analysis.percent_complete is None and analysis.percent_complete_rounded is None
    assert analysis.margin_pct is None
    assert analysis.margin == D("-17985.00")
    assert "zero budgeted hours: percent complete not computed" in analysis.notes
    assert "zero revenue: margin percent not computed" in analysis.notes


def test_time_and_materials_earns_hours_at_bill_rates() -> None:
    bills = {"engineer": D(250), "project_manager": D(225)}
    analysis = analyse("e", Budget(None, "USD", D(160), "opportunity"), WORK, [], D(0), RATES, True, bills)
    # revenue 140.25 x 250 + 10.5 x 225 = 35,062.50 + 2,362.50 = 37,425.00; cost 17,985.00
    assert analysis.revenue == D("37425.00")
    assert analysis.margin == D("19440.00")
    assert analysis.margin_pct_rounded == D("51.9")  # 51.944...
    assert analysis.billing == "time_and_materials"


@pytest.mark.parametrize(
    ("hours", "rate", "cost_rounded"),
    [
        (D("0.25"), D("133.33"), D("33.33")),  # 33.3325
        (D("0.75"), D("133.34"), D("100.01")),  # 100.005 -> half up
        (D("1.25"), D("99.99"), D("124.99")),  # 124.9875
    ],
)
def test_money_rounds_half_up_to_cents_raw_value_kept(hours: D, rate: D, cost_rounded: D) -> None:
    rates = CostRates("USD", {"engineer": rate})
    analysis = analyse("e", BUDGET, [ApprovedTime("ada", "engineer", "Project Work", hours)], [], D(0), rates)
    assert analysis.cost == hours * rate
    assert analysis.cost_rounded == cost_rounded


def test_missing_inputs_are_all_named() -> None:
    work = [*WORK, ApprovedTime("hedy", "trainer", "Project Work", D(2)), ApprovedTime("ken", "", "Project Work", D(1))]
    with pytest.raises(InvalidEngagement) as raised:
        analyse("e", Budget(None, "EUR", None, ""), work, [], D(0), RATES)
    fields = {(p.system, p.field) for p in raised.value.problems}
    assert fields == {
        ("Salesforce", "Opportunity.Amount"),
        ("Salesforce", "Opportunity.Budgeted_Hours__c"),
        ("Salesforce", "Opportunity.CurrencyIsoCode"),
        ("close-out rules", "cost_rates.rates.trainer"),
        ("GitLab", "user ken job_title"),
    }


def test_cost_rates_from_mapping_refuses_bad_values() -> None:
    assert CostRates.from_mapping({"cost_rates": {"currency": "USD", "rates": {"engineer": 120}}}).rates == {
        "engineer": D(120)
    }
    with pytest.raises(ConfigurationError, match="cost_rates"):
        CostRates.from_mapping({})
    with pytest.raises(ConfigurationError, match="not a number"):
        CostRates.from_mapping({"cost_rates": {"rates": {"engineer": "lots"}}})
    with pytest.raises(ConfigurationError, match="target_margin"):
        CostRates.from_mapping({"cost_rates": {"rates": {"engineer": 1}}, "target_margin": 1.5})


@pytest.mark.parametrize(
    ("approved", "budget", "expected"),
    [
        (D(0), D(100), None),
        (D("24.75"), D(100), None),
        (D(25), D(100), 25),
        (D("49.99"), D(100), 25),
        (D(50), D(100), 50),
        (D(80), D(100), 75),
        (D(100), D(100), 100),
        (D(140), D(100), 100),
        (D(10), D(0), None),
        (D(10), None, None),
    ],
)
def test_highest_milestone_reached(approved: D, budget: D | None, expected: int | None) -> None:
    assert milestone_reached(approved, budget) == expected


def test_label_change_touches_only_its_scope() -> None:
    current = ["ps::todo", "progress::25", "close_qtr::Q426", "Custom SOW"]
    change = progress_label_change(current, "progress::50", "progress")
    assert change.add == ("progress::50",) and change.remove == ("progress::25",)
    assert progress_label_change(["progress::50", "ps::todo"], "progress::50", "progress").empty
    below = progress_label_change(["progress::25", "progress-note"], None, "progress")
    assert below.add == () and below.remove == ("progress::25",)


def test_no_approved_hours_and_many_adjustments_are_noted_briefly() -> None:
    nothing = analyse("e", BUDGET, [], [], D(0), RATES)
    assert nothing.cost == 0 and nothing.margin_pct == D(100) and nothing.percent_complete == 0
    assert "no approved hours: the timesheet roll-up exported none for this engagement" in nothing.notes
    many = [Adjustment("2026-W40", str(n), "ada", "edited", D("0.25")) for n in range(25)]
    analysis = analyse("e", BUDGET, WORK, many, D(0), RATES, roles={"ada": "engineer"})
    [note] = [note for note in analysis.notes if note.startswith("adjustments after lock")]
    assert "adjustments after lock: 25" in note and "and 15 more" in note and "net +6.25 hours" in note
    assert analysis.approved_hours == D("150.75") + D("6.25")
