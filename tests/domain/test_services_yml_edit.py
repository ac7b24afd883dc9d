"""services.yml follows Zuora with the smallest diff (issue #19), on the real file and on hand-made ones."""

from __future__ import annotations

import difflib
from datetime import date
from pathlib import Path

import pytest

from ps_integrations.domain.services_catalog import parse_services_yml
from ps_integrations.domain.services_yml_edit import (
    ADD,
    NAME,
    PRICE,
    RETIRE,
    Change,
    EditError,
    apply_changes,
    follow_zuora,
)
from ps_integrations.domain.sku_reconciliation import reconcile
from ps_integrations.domain.zuora_catalog import join_zuora_catalog
from sandbox.zuora.seed import build_catalog

AS_OF = date(2026, 11, 21)
# the real file, as ../shared/reference holds it (the project keeps a copy in include/reference)
REAL = Path(__file__).resolve().parents[3] / "shared" / "reference" / "services.yml"
if not REAL.exists():
    REAL = Path(__file__).resolve().parents[2] / "include" / "reference" / "services.yml"
TEXT = REAL.read_text(encoding="utf-8")


def diff(before: str, after: str) -> list[str]:
    return [
        line
        for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]


def change(kind, entry_id, line, old="", new="", sku="X", currency="USD", name=""):
    return Change(kind, sku, entry_id, line, old, new, currency, "because Zuora says so", name)


def test_nothing_to_change_is_the_same_text():
    assert apply_changes(TEXT, []) == TEXT


def test_a_price_change_changes_that_line_only():
    edited = apply_changes(TEXT, [change(PRICE, "training_sessions_basics", 1, "7000", "7700", "GL-BAS")])
    assert diff(TEXT, edited) == ["-  price: 7000", "+  price: 7700"]


def test_a_price_written_with_a_symbol_and_separators_keeps_them():
    line = next(i for i, text in enumerate(TEXT.splitlines(), 1) if text.startswith("- id: Expertise-Services"))
    edited = apply_changes(TEXT, [change(PRICE, "Expertise-Services", line, "14400", "15250.50", "GL-XPRT")])
    assert diff(TEXT, edited) == ["-  price: $14,400", "+  price: $15,250.50"]
    assert parse_services_yml(edited).entries  # still read by the reconciliation's own reader


def test_a_name_keeps_the_odd_spacing_before_it_and_is_quoted_only_when_it_must_be():
    edited = apply_changes(TEXT, [change(NAME, "training_sessions_basics", 1, "x", "GitLab Basics (2027)")])
    assert diff(TEXT, edited) == ["-  name:     GitLab with Git Basics Training", "+  name:     GitLab Basics (2027)"]
    edited = apply_changes(TEXT, [change(NAME, "training_sessions_basics", 1, "x", "Basics: #1 & *best*")])
    assert diff(TEXT, edited) == ["-  name:     GitLab with Git Basics Training", '+  name:     "Basics: #1 & *best*"']


def test_retiring_removes_the_entry_and_keeps_the_next_entrys_comment():
    text = "# PS catalog\n- id: a\n  name: A  # first\n  sku: A\n\n# the second one\n- id: b\n  name: B\n  sku: B\n"
    assert (
        apply_changes(text, [change(RETIRE, "a", 2, sku="A")])
        == "# PS catalog\n# the second one\n- id: b\n  name: B\n  sku: B\n"
    )
    assert (
        apply_changes(text, [change(RETIRE, "b", 7, sku="B")])
        == "# PS catalog\n- id: a\n  name: A  # first\n  sku: A\n\n"
    )


def test_adding_appends_an_entry_in_the_files_layout():
    edited = apply_changes(
        TEXT, [change(ADD, "ps-zuora-only", None, new="12000", sku="PS-ZUORA-ONLY", name="Retainer: legacy")]
    )
    assert diff(TEXT, edited) == [
        "+",
        "+- id: ps-zuora-only",
        '+  name: "Retainer: legacy"',
        "+  price: 12000",
        "+  sku: PS-ZUORA-ONLY",
    ]
    eur = apply_changes("- id: a\n  sku: A\n", [change(ADD, "b", None, new="9000", sku="B", currency="EUR", name="B")])
    assert eur == "- id: a\n  sku: A\n- id: b\n  name: B\n  price: 9000 EUR\n  sku: B\n"


def test_several_changes_at_once_and_comments_stay():
    text = "- id: a  # keep me\n  name: A\n  price: 100 # list\n  sku: A\n"
    edited = apply_changes(text, [change(PRICE, "a", 1, "100", "120"), change(NAME, "a", 1, "A", "Alpha")])
    assert edited == "- id: a  # keep me\n  name: Alpha\n  price: 120 # list\n  sku: A\n"


@pytest.mark.parametrize(
    ("text", "edit", "message"),
    [
        ("- id: a\n  price: 1\n", change(PRICE, "a", 5, "1", "2"), "entry a at line 5 not found"),
        ("- &x\n  id: a\n  price: 1\n- *x\n", change(PRICE, "a", 1, "1", "2"), "written as an alias"),
        ("- id: a\n  price: [1]\n", change(PRICE, "a", 1, "1", "2"), "no single-value price"),
        ("- id: a\n  name: A\n    B\n", change(NAME, "a", 1, "A B", "C"), "spans several lines"),
        ("key: value\n", change(PRICE, "a", 1, "1", "2"), "not a list of entries"),
    ],
)
def test_what_cannot_be_edited_exactly_is_refused(text, edit, message):
    with pytest.raises(EditError, match=message):
        apply_changes(text, [edit])


def test_the_sandbox_zuora_drift_becomes_these_changes():
    records = build_catalog({})
    zuora = join_zuora_catalog(
        records["Product"],
        records["ProductRatePlan"],
        records["ProductRatePlanCharge"],
        records["ProductRatePlanChargeTier"],
        AS_OF,
    )
    catalog = parse_services_yml(TEXT)
    plan = follow_zuora(reconcile(catalog.entries, zuora, AS_OF, catalog.invalid), zuora)
    assert [(c.kind, c.entry_id, c.old, c.new) for c in plan.changes] == [
        (RETIRE, "training_sessions_pm", "GitLab for Project Managers Training", ""),
        (NAME, "training_sessions_cicd", "GitLab CI/CD Training", "GitLab CI/CD Training (2025 edition)"),
        (PRICE, "training_sessions_cicd_remote", "5000.00", "5500.00"),
        (ADD, "ps-zuora-only", "", "12000.00"),
    ]
    assert [(s.sku, s.reason) for s in plan.skipped] == [("SRV-PERSEAT-R", "duplicate_sku: left to a person")]
    edited = apply_changes(TEXT, plan.changes)
    assert len(diff(TEXT, edited)) == 36 + 2 + 2 + 5  # the retired entry's lines, a name, a price, a new entry
    # after the changes Zuora and services.yml agree on everything services.yml can follow
    again = parse_services_yml(edited)
    assert follow_zuora(reconcile(again.entries, zuora, AS_OF, again.invalid), zuora).changes == ()


def test_windows_line_ends_and_indented_lists_are_kept():
    text = "- id: a\r\n  price: 100\r\n  sku: A\r\n\r\n# b\r\n- id: b\r\n  price: 5\r\n  sku: B\r\n"
    edited = apply_changes(
        text, [change(PRICE, "a", 1, "100", "120"), change(ADD, "c", None, new="10", sku="C", name="C")]
    )
    assert edited == (
        "- id: a\r\n  price: 120\r\n  sku: A\r\n\r\n# b\r\n- id: b\r\n  price: 5\r\n  sku: B\r\n"
        "\r\n- id: c\r\n  name: C\r\n  price: 10\r\n  sku: C\r\n"
    )
    assert apply_changes(text, [change(RETIRE, "b", 6, sku="B")]) == "- id: a\r\n  price: 100\r\n  sku: A\r\n\r\n"
    nested = apply_changes("  - id: a\n    sku: A\n", [change(ADD, "c", None, new="10.5", sku="C", name="C")])
    assert nested == "  - id: a\n    sku: A\n  - id: c\n    name: C\n    price: 10.50\n    sku: C\n"
