"""The close-out's export files: deterministic bytes, escaped text, no None/NaN, raw next to rounded."""

from __future__ import annotations

import csv
import io
from decimal import Decimal as D

from ps_integrations.domain.engagement_closeout import ApprovedTime, Budget, CostRates, analyse
from ps_integrations.jobs.engagement_closeout import ClosedIssue, Opportunity, analysis_files, raw, report_templates

RATES = CostRates("USD", {"engineer": D(120)})


def files(title: str, amount: D | None = D(10000), hours: D | None = D(30)):
    issue = ClosedIssue("https://gitlab.example.com/e/-/issues/7", 7, title, "2026-11-23T09:30:00Z", "", (), 0)
    budget = Budget(amount, "USD", hours, "opportunity")
    opportunity = Opportunity("0065g0000000007AAA", "Deal", "Acme <b>Inc</b>", budget)
    analysis = analyse(
        issue.url, budget, [ApprovedTime("ada", "engineer", "Project Work", D("33.25"))], [], D(0), RATES
    )
    return analysis_files(issue, opportunity, analysis, report_templates())


def test_same_inputs_same_bytes_and_text_is_escaped():
    title = 'Acme: <script>alert("x")</script> & co'
    first, second = files(title), files(title)
    assert [f.content for f in first] == [f.content for f in second]
    html = first[1].content.decode()
    assert "<script>" not in html and "&lt;script&gt;" in html and "Acme &lt;b&gt;Inc&lt;/b&gt;" in html


def test_csv_holds_raw_and_rounded_values_and_never_none_or_nan():
    table, _report = files("Acme: Rollout", amount=D(0), hours=D(0))
    text = table.content.decode()
    assert "None" not in text and "NaN" not in text
    total = list(csv.DictReader(io.StringIO(text)))[-1]
    # 33.25 h x 120 = 3,990; zero revenue and zero budget: no percentages, empty cells
    assert (total["cost"], total["cost_rounded"], total["margin"], total["margin_rounded"]) == (
        "3990",
        "3990.00",
        "-3990",
        "-3990.00",
    )
    assert total["margin_pct"] == "" and total["percent_complete"] == ""
    assert "zero revenue" in total["notes"] and "overrun" not in total["notes"]


def test_raw_strips_decimal_noise_only():
    assert (str(raw(D("68.1500"))), str(raw(D("9555.0"))), str(raw(D("0.333333")))) == ("68.15", "9555", "0.333333")
    assert raw(None) is None and str(raw(D("1E+3"))) == "1000"
