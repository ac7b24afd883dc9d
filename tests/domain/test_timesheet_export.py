"""One period's export files, checked against hand-computed values."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from datetime import date
from decimal import Decimal

import pytest

from ps_integrations.domain.timesheet_export import EngagementInfo, period_export
from ps_integrations.domain.timesheets import Entry, period_of
from ps_integrations.jobs.timesheets import load_rules

WEEK = period_of(date(2026, 11, 9))
ACME = "https://gitlab.example/ps/engagements/-/issues/1"
EMBED = "https://gitlab.example/ps/engagements/-/issues/2"
STRAY = "https://gitlab.example/ps/engagements/-/issues/9"


def secs(hours) -> int:
    """Hours (as the hand computation writes them) -> the seconds GitLab logs."""
    return int(Decimal(str(hours)) * 3600)


def table(files, name):
    [export] = [f for f in files if f.name == name]
    return list(csv.DictReader(io.StringIO(export.content.decode("utf-8"))))


def build():
    entries = [
        Entry("1", "amara.ps1", date(2026, 11, 9), ACME, "Project Work", secs(6)),
        Entry("2", "amara.ps1", date(2026, 11, 10), EMBED, "Project Work", secs(8)),
        Entry("3", "amara.ps1", date(2026, 11, 10), EMBED, "Project Work", secs("-0.25")),
        Entry("4", "amara.ps1", date(2026, 11, 11), "https://x/internal", "PS Internal", secs(8)),
        Entry("5", "amara.ps1", date(2026, 11, 12), "https://x/pto", "PTO/Holidays", secs(8)),
        Entry("6", "bjorn.ps2", date(2026, 11, 9), ACME, "Project Work", secs(30)),
        Entry("7", "bjorn.ps2", date(2026, 11, 13), EMBED, "Project Work", secs(2)),
        Entry("8", "chen.ps3", date(2026, 11, 13), STRAY, "Project Work", secs(40)),
    ]
    engagements = {
        ACME: EngagementInfo(ACME, "006A", "Acme", "GL-IMPL-QS", Decimal(40)),
        EMBED: EngagementInfo(EMBED, "006B", "Initech", "GL-ENGR-3", Decimal(500), time_and_materials=True),
    }
    return period_export(
        WEEK,
        entries,
        {"amara.ps1": "engineer", "bjorn.ps2": "trainer", "chen.ps3": "engineer"},
        engagements,
        {ACME: Decimal(10)},  # exported for earlier periods
        [("bjorn.ps2", "untrusted_approval", "issue #7: approval labels out of order")],
        load_rules(),  # rates: engineer 250, trainer 200 (USD)
    ).files


def test_approved_hours_carry_engagement_and_billable_flag():
    rows = table(build(), "approved_hours.csv")
    assert len(rows) == 7  # one row per engineer, day and engagement: amara's 8 h and -0.25 h on the 10th share one
    first = rows[0]
    assert (
        first["engineer"],
        first["period"],
        first["date"],
        first["opportunity_id"],
        first["account"],
        first["sku"],
        first["billable"],
        first["hours"],
    ) == ("amara.ps1", "2026-W46", "2026-11-09", "006A", "Acme", "GL-IMPL-QS", "true", "6.00")
    amara = [row for row in rows if row["engineer"] == "amara.ps1"]
    assert [(row["timelogs"], row["logged_minutes"], row["hours"]) for row in amara] == [
        ("1", "360.00", "6.00"),
        ("2", "465.00", "7.75"),
        ("1", "480.00", "8.00"),
        ("1", "480.00", "8.00"),
    ]


def test_utilization_hand_computed():
    rows = {row["engineer"]: row for row in table(build(), "utilization.csv")}
    # amara: billable 6 + 8 - 0.25 = 13.75; available 40 - 8 PTO = 32; 42.97%; target 70% -> -27.03
    assert (rows["amara.ps1"]["billable_hours"], rows["amara.ps1"]["available_hours"]) == ("13.75", "32.00")
    assert (rows["amara.ps1"]["utilization_pct"], rows["amara.ps1"]["target_pct"], rows["amara.ps1"]["gap_pct"]) == (
        "42.97",
        "70.00",
        "-27.03",
    )
    # bjorn (trainer): 32 / 40 = 80%, target 55% -> +25
    assert (rows["bjorn.ps2"]["utilization_pct"], rows["bjorn.ps2"]["gap_pct"]) == ("80.00", "25.00")


def test_progress_caps_flags_and_releases_time_and_materials_revenue():
    rows = {row["engagement"]: row for row in table(build(), "engagement_progress.csv")}
    # ACME: 10 h before + 36 h this week = 46 of 40 budgeted
    assert (rows[ACME]["period_hours"], rows[ACME]["approved_hours_to_date"]) == ("36.00", "46.00")
    assert (rows[ACME]["percent_complete"], rows[ACME]["over_budget"], rows[ACME]["billing"]) == (
        "100.0",
        "true",
        "fixed_price",
    )
    embedded = rows[EMBED]
    # embedded: amara 8 - 0.25 = 7.75 h x 250 + bjorn 2 h x 200 = 2337.50 for 9.75 h (blended 239.74)
    assert (embedded["approved_hours_to_date"], embedded["percent_complete"], embedded["billing"]) == (
        "9.75",
        "2.0",
        "time_and_materials",
    )
    assert (embedded["hourly_rate"], embedded["currency"], embedded["revenue_to_release"]) == (
        "239.74",
        "USD",
        "2337.50",
    )
    assert rows[ACME]["revenue_to_release"] == "" and rows[ACME]["currency"] == ""


def test_findings_include_low_weeks_and_given_findings():
    rows = table(build(), "findings.csv")
    assert [(row["engineer"], row["kind"]) for row in rows] == [
        ("", "unknown_engagement"),
        ("amara.ps1", "under_minimum"),
        ("bjorn.ps2", "under_minimum"),
        ("bjorn.ps2", "untrusted_approval"),
    ]
    assert rows[0]["detail"] == f"{STRAY}: not an issue of the engagements project"
    assert rows[1]["detail"] == "29.75 h logged, minimum 40 h"  # 6 + 8 - 0.25 + 8 internal + 8 PTO


def test_one_number_format_per_column():
    rows = table(build(), "utilization.csv")
    for column in ("billable_hours", "logged_hours", "available_hours"):
        assert all(len(row[column].split(".")[1]) == 2 for row in rows), column
    assert {row["available_hours"] for row in rows} == {"32.00", "40.00"}


def test_an_approved_engineer_with_no_time_gets_a_utilization_row_and_an_under_minimum_finding():
    files = period_export(WEEK, [], {"dara.ps4": "engineer"}, {}, {}, [], load_rules(), approved_engineers=["dara.ps4"])
    [row] = table(files.files, "utilization.csv")
    assert (row["engineer"], row["billable_hours"], row["available_hours"], row["utilization_pct"]) == (
        "dara.ps4",
        "0.00",
        "40.00",
        "0.00",
    )
    [finding] = table(files.files, "findings.csv")
    assert (finding["kind"], finding["detail"]) == ("under_minimum", "no time logged, minimum 40 h")


def small_entries(minutes: int, count: int = 10) -> list[Entry]:
    return [Entry(str(n), "amara.ps1", date(2026, 11, 9), ACME, "Project Work", minutes * 60) for n in range(count)]


@pytest.mark.parametrize(
    ("policy", "minutes", "hours", "difference"),
    [
        ("per_day", 6, "1.00", "0.0000"),  # ten 6-minute entries: 1.0 h worked, 1.00 h billed
        ("per_day", 8, "1.25", "-0.0833"),  # ten 8-minute entries: 1.33 h worked, 1.25 h billed (not 2.50)
        ("per_entry", 6, "0.00", "-1.0000"),  # the old behaviour, still a choice, visibly off
        ("per_entry", 8, "2.50", "1.1667"),
        ("none", 8, "1.33", "-0.0033"),
    ],
)
def test_rounding_policy_and_the_manifest_check(policy, minutes, hours, difference):
    rules = replace(load_rules(), rounding=policy)
    built = period_export(WEEK, small_entries(minutes), {"amara.ps1": "engineer"}, {}, {}, [], rules)
    [row] = table(built.files, "approved_hours.csv")
    assert (row["timelogs"], row["logged_minutes"], row["hours"]) == ("10", f"{minutes * 10}.00", hours)
    [check] = built.rounding
    assert (check.rounded_hours, check.difference, check.within_bound) == (Decimal(hours), Decimal(difference), True)
    manifest = built.rounding_manifest()
    assert manifest["policy"] == policy and manifest["within_bounds"] is True
    assert manifest["engineers"][0]["logged_minutes"] == f"{minutes * 10}.00"


def test_identical_inputs_give_identical_bytes():
    assert [f.content for f in build()] == [f.content for f in build()]


def test_rows_come_in_engineer_day_engagement_order():
    import random
    from operator import attrgetter

    from ps_integrations.domain.timesheet_export import _by_engineer_day_engagement

    rng = random.Random(3)
    entries = [
        Entry(
            str(rng.randrange(10_000)),
            f"e{rng.randrange(5)}",
            date(2026, 11, 9 + rng.randrange(5)),
            f"u{rng.randrange(4)}",
            "Project Work",
            3600,
        )
        for _ in range(500)
    ]
    assert _by_engineer_day_engagement(entries) == sorted(
        entries, key=attrgetter("engineer", "day", "engagement", "timelog_id")
    )


def test_a_period_that_has_not_ended_is_refused_with_the_reason():
    from ps_integrations.exceptions import ConfigurationError
    from ps_integrations.jobs.timesheets import refuse_unfinished, selected_periods

    today = date(2026, 11, 23)  # a Monday: W47 ended last night, W48 has just begun
    refuse_unfinished(selected_periods("2026-W47", None, None, "week"), today, "UTC")
    with pytest.raises(ConfigurationError, match=r"2026-W48 \(ends 2026-11-30 00:00 UTC\) has not ended"):
        refuse_unfinished(selected_periods("2026-W48", None, None, "week"), today, "UTC")
    with pytest.raises(ConfigurationError, match="preview=true"):
        refuse_unfinished(selected_periods(None, "2026-11-01", "2026-11-23", "week"), today, "UTC")
    with pytest.raises(ConfigurationError, match=r"2026-11 \(ends 2026-12-01"):
        refuse_unfinished(selected_periods("2026-11", None, None, "month"), date(2026, 11, 30), "UTC")


def test_the_schedule_and_the_dating_time_zone_are_one():
    from ps_integrations.exceptions import ConfigurationError
    from ps_integrations.jobs.timesheets import RollupConfig, check_time_zones

    check_time_zones("Europe/Berlin", RollupConfig(business_timezone="Europe/Berlin"))
    with pytest.raises(
        ConfigurationError, match=r"PS_BUSINESS_TIMEZONE='UTC' but .*business_timezone is 'Pacific/Auckland'"
    ):
        check_time_zones("UTC", RollupConfig(business_timezone="Pacific/Auckland"))


def test_category_settings_name_known_categories():
    from ps_integrations.exceptions import ConfigurationError
    from ps_integrations.jobs.timesheets import RollupConfig

    config = RollupConfig.from_mapping({"category_issues": {"https://x/issues/7": "PS Internal"}})
    assert config.categories.category(False, None, (), "https://x/issues/7") == "PS Internal"
    with pytest.raises(ConfigurationError, match=r"category_labels names unknown categories \['Lunch'\]"):
        RollupConfig.from_mapping({"category_labels": {"lunch": "Lunch"}})


# --- budgets (#16: one implementation, tested directly; #23: a failed lookup is never exported) -----------
def test_the_budget_field_wins_else_hours_per_sku_and_the_main_sku_is_the_largest_line():
    rules = load_rules()
    lines = [("GL-IMPL-QS", "2", "5000"), ("GL-TRAIN", "1", "9000")]
    from ps_integrations.domain.timesheet_export import Budget, engagement_budget

    assert engagement_budget("120", lines, rules) == Budget(Decimal(120), "GL-TRAIN", "opportunity")
    from_skus = engagement_budget(None, lines, rules)
    assert from_skus.source == "sku_table" and from_skus.sku == "GL-TRAIN"
    assert from_skus.hours == rules.budget_from_skus([("GL-IMPL-QS", Decimal(2)), ("GL-TRAIN", Decimal(1))])
    assert engagement_budget("", [("UNKNOWN", "1", "1")], rules) == Budget(None, "UNKNOWN", "")
    assert engagement_budget(None, [], rules) == Budget(None, "", "")


def test_budgets_join_by_18_or_15_character_id_and_a_failed_lookup_marks_engagements():
    from ps_integrations.domain.timesheet_export import (
        Budget,
        engagements_without_budget,
        with_budgets,
        without_budgets,
    )

    directory = {
        "e1": EngagementInfo("e1", "0065g00000AbCdE"),  # 15 characters in the marker
        "e2": EngagementInfo("e2", "0065g00000ZZZZZAAA"),
        "e3": EngagementInfo("e3", problem="engagement issue has no opportunity link"),
    }
    joined = with_budgets(directory, {"0065g00000AbCdE": Budget(Decimal(40), "GL-IMPL-QS", "opportunity")})
    assert (joined["e1"].budgeted_hours, joined["e1"].sku, joined["e1"].budget_source) == (
        Decimal(40),
        "GL-IMPL-QS",
        "opportunity",
    )
    assert joined["e2"].problem == "opportunity 0065g00000ZZZZZAAA not found in Salesforce"
    assert joined["e3"] == directory["e3"]

    failed = without_budgets(directory, "REQUEST_LIMIT_EXCEEDED: limit")
    day = date(2026, 11, 9)
    entries = [Entry("1", "a", day, "e2", "Project Work", 60), Entry("2", "a", day, "e3", "Project Work", 60)]
    assert [info.url for info in engagements_without_budget(entries, failed)] == ["e2"]
    assert engagements_without_budget(entries, joined) == []
