"""The Salesforce hook's budget read for the timesheet roll-up (issue #16), against the stand-in."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from ps_integrations.exceptions import SalesforceApiError
from ps_integrations.hooks.salesforce import OpportunityBudget, SalesforceHook


@pytest.fixture
def hook(sandbox, monkeypatch):
    definition = sandbox.airflow_connections()["salesforce_default"]
    monkeypatch.setenv("AIRFLOW_CONN_SALESFORCE_DEFAULT", json.dumps(definition))
    return SalesforceHook()


def test_budgets_and_line_items_come_back_typed_200_ids_a_query(hook, sandbox):
    records = sandbox.standin("salesforce").backend.records["Opportunity"]  # Id -> fields
    known = sorted(records)[:3]
    asked = known + [f"006ZZ{n:010d}" for n in range(250)]  # unknown ones: more than one query of 200

    standin = sandbox.standin("salesforce")
    standin.clear_call_counts()
    budgets = hook.opportunity_budgets(asked, "Budgeted_Hours__c")

    assert standin.call_counts().get("query") == 2 and {b.opportunity_id for b in budgets} == set(known)
    assert all(isinstance(b, OpportunityBudget) for b in budgets)
    for budget in budgets:
        value = records[budget.opportunity_id].get("Budgeted_Hours__c")
        assert budget.budget == (None if value in (None, "") else str(value))
        assert all(Decimal(line.quantity) >= 0 and Decimal(line.total_price) >= 0 for line in budget.lines)
    assert hook.opportunity_budgets([], "Budgeted_Hours__c") == []


def test_a_field_name_that_is_not_one_is_refused_before_any_query(hook):
    with pytest.raises(SalesforceApiError, match="INVALID_FIELD"):
        hook.opportunity_budgets(["0065g00000AbCdEAAA"], "Id FROM User --")
    with pytest.raises(SalesforceApiError, match="INVALID_FIELD"):
        hook.opportunity_budgets(["0065g00000AbCdEAAA"], "No_Such_Field__c")  # Salesforce's own answer
