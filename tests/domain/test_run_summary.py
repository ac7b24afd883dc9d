"""The run summary line every DAG ends with."""

from __future__ import annotations

import pytest

from ps_integrations.exceptions import RecordsFailedError
from ps_integrations.run_summary import RecordFailure, RunSummary


def test_line_lists_the_standard_counts_in_order():
    summary = RunSummary()
    summary.add("read", 412)
    summary.add("created", 3)
    summary.add("updated", 5)
    summary.add("unchanged", 404)

    assert summary.line() == "read 412, created 3, updated 5, unchanged 404, failed 0"


def test_failures_count_and_describe_record_field_and_system():
    summary = RunSummary()
    summary.add("read", 2)
    summary.fail(RecordFailure("Salesforce", "Opportunity 006A", "not a number", field="Amount"))
    summary.note("API usage 81% (warning above 80%)")

    assert summary.line() == ("read 2, created 0, updated 0, unchanged 0, failed 1; API usage 81% (warning above 80%)")
    assert summary.failures[0].describe() == "Salesforce Opportunity 006A field Amount: not a number"
    assert RunSummary.from_dict(summary.to_dict()) == summary


def test_records_failed_error_names_every_failure():
    error = RecordsFailedError("read 2, failed 2", ["GitLab issue 1: 400", "GitLab issue 2: 422"])
    assert str(error) == "2 record(s) failed (read 2, failed 2):\n  - GitLab issue 1: 400\n  - GitLab issue 2: 422"


@pytest.mark.parametrize("counts", [{"checks": 3}, {"read": 0}])
def test_custom_counts_keep_their_order(counts):
    assert RunSummary(counts=dict(counts)).line() == ", ".join(f"{k} {v}" for k, v in counts.items())
