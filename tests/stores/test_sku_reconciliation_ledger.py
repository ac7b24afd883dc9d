"""The SKU reconciliation's records on both state-store backends: runs, problems, the issue, mails."""

from __future__ import annotations

import json
from datetime import date

import pytest
from sqlalchemy import text

from ps_integrations.domain.sku_reconciliation import ProblemKey
from ps_integrations.stores.sent_mail import MailState
from ps_integrations.stores.sku_reconciliation import JOB, ReconciliationLedger, ReconciliationRun


@pytest.fixture(autouse=True)
def _schema(store):
    store.apply_schema()


def run(day: date, folder: str = "f") -> ReconciliationRun:
    return ReconciliationRun(day, "main", "b" * 40, {"match": 3, "price_mismatch": 1}, folder, f"run-{day}")


MISMATCH = ProblemKey("SVC-A", "USD", "price_mismatch")
NO_SKU = ProblemKey("id:svc-b", "", "no_sku")


def test_previous_problems_come_from_the_latest_earlier_run(store):
    ledger = ReconciliationLedger(store)
    assert ledger.previous_problems(date(2026, 11, 21)) is None  # no earlier run
    ledger.record_run(run(date(2026, 11, 19)), [NO_SKU])
    ledger.record_run(run(date(2026, 11, 20)), [MISMATCH, NO_SKU])
    ledger.record_run(run(date(2026, 11, 21)), [])

    assert ledger.previous_problems(date(2026, 11, 21)) == {MISMATCH, NO_SKU}
    assert ledger.previous_problems(date(2026, 11, 20)) == {NO_SKU}
    assert ledger.previous_problems(date(2026, 11, 22)) == frozenset()  # an earlier run without problems


def test_recording_an_as_of_again_replaces_it(store):
    ledger = ReconciliationLedger(store)
    ledger.record_run(run(date(2026, 11, 20), "old"), [MISMATCH, NO_SKU])
    ledger.record_run(run(date(2026, 11, 20), "new"), [NO_SKU])

    assert ledger.previous_problems(date(2026, 11, 21)) == {NO_SKU}
    with store.transaction() as connection:
        rows = connection.execute(text("SELECT export_folder, counts_json FROM sku_reconciliation_runs")).all()
    assert [(folder, json.loads(counts)) for folder, counts in rows] == [("new", {"match": 3, "price_mismatch": 1})]


def test_finance_issue_iid_and_mail_ledger(store):
    ledger = ReconciliationLedger(store)
    assert ledger.finance_issue_iid() is None
    ledger.remember_finance_issue(7)
    assert ReconciliationLedger(store).finance_issue_iid() == 7
    store.set_value(JOB, "finance_issue_iid", "not a number")
    assert ledger.finance_issue_iid() is None

    sent: list[str] = []
    assert ledger.mail.send_once("mail:2026-11-21", "v1", lambda: sent.append("v1")) is MailState.SENT
    assert ReconciliationLedger(store).mail.send_once("mail:2026-11-21", "v1", lambda: sent.append("again")) is (
        MailState.ALREADY_SENT
    )
    assert sent == ["v1"]
