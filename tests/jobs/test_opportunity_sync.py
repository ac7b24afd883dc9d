"""The opportunity sync's orchestration against in-memory fakes of Salesforce and GitLab (its
Protocols) and the real ledger on a throwaway SQLite file: creates, updates, notes exactly once,
write-back, and a kill between the GitLab create and its record."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime
from itertools import count

import pytest
from sqlalchemy import create_engine

from ps_integrations.domain.opportunity_sync import SyncConfig, find_marker
from ps_integrations.exceptions import ConfigurationError, GitLabApiError, GitLabNotFoundError
from ps_integrations.hooks.gitlab import GitLabIssue, GitLabNote, GitLabUser
from ps_integrations.jobs.opportunity_sync import OpportunitySync, sync_window
from ps_integrations.run_window import RunWindow
from ps_integrations.state_store import StateStore
from ps_integrations.stores.opportunity_sync import OpportunityLedger
from tests.domain.test_opportunity_sync import record

PROJECT = "professional-services/engagements"
WINDOW = RunWindow(datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 23, tzinfo=UTC), "params")
WON = "0065g0000000001AAA"
CONFIG = SyncConfig(project=PROJECT, coordinator="pm", writeback_field="GitLab_Issue_URL__c")


class Killed(BaseException):
    """The task process dies (not an error the job could catch)."""


def opportunity(**overrides):
    return record(Amount=1000.0, GitLab_Issue_URL__c=None, **overrides)


class FakeSalesforce:
    def __init__(self, *records):
        self.records = {record["Id"]: record for record in records}
        self.written: dict[str, dict] = {}

    def describe_fields(self, sobject):
        return {"Id", "Amount", "CurrencyIsoCode"}

    def query_records(self, soql, include_deleted=False):
        ids = re.search(r"Id IN \(([^)]*)\)", soql)
        wanted = set(re.findall(r"'(\w+)'", ids.group(1))) if ids else set(self.records)
        return iter([dict(record) for key, record in self.records.items() if key in wanted])

    def update_records(self, sobject, updates):
        for key, fields in updates.items():
            self.written[key] = fields
            self.records[key] = {**self.records[key], **fields}
        return dict.fromkeys(updates)

    def record_url_base(self):
        return "https://acme.my.salesforce.com"

    api_usage = None


class FakeGitLab:
    def __init__(self):
        self.issues: dict[int, GitLabIssue] = {}
        self.notes: dict[int, list[GitLabNote]] = {}
        self.requests_made = 0
        self.kill_after_create = False
        self.ids = count(1)

    def pace(self, requests_per_minute, notes_per_minute=None):
        return self

    def list_issues(self, project, *, state="all", order_by="created_at", sort="asc"):
        self.requests_made += 1
        return iter(list(self.issues.values()))

    def get_issue(self, project, iid):
        if iid not in self.issues:
            raise GitLabNotFoundError(404, f"GET /projects/{project}/issues/{iid}", "404 Not found")
        return self.issues[iid]

    def create_issue(self, project, title, description, *, labels=(), assignee_ids=(), due_date=None):
        iid = len(self.issues) + 1
        self.issues[iid] = GitLabIssue(
            project, iid, iid, title, description, "opened", tuple(labels), f"https://gitlab/{project}/-/issues/{iid}",
            "", "", None, due_date, tuple(GitLabUser(i, "pm") for i in assignee_ids), None, False, 0, 0,
        )  # fmt: skip
        if self.kill_after_create:
            raise Killed("after GitLab answered the create")
        return self.issues[iid]

    def update_issue(
        self, project, iid, *, title=None, description=None, add_labels=(), remove_labels=(), due_date=None
    ):
        issue = self.issues[iid]
        labels = tuple(label for label in (*issue.labels, *add_labels) if label not in remove_labels)
        self.issues[iid] = replace(
            issue,
            title=title if title is not None else issue.title,
            description=description if description is not None else issue.description,
            labels=tuple(dict.fromkeys(labels)),
            due_date=due_date if due_date is not None else issue.due_date,
        )
        return self.issues[iid]

    def list_notes(self, project, iid, *, newest_first=True):
        return iter(reversed(self.notes.get(iid, [])))

    def create_note(self, project, iid, body):
        note = GitLabNote(next(self.ids), body, "sync", "", False)
        self.notes.setdefault(iid, []).append(note)
        return note

    def find_user(self, username):
        return GitLabUser(7, username) if username == "pm" else None


@pytest.fixture
def ledger(tmp_path):
    store = StateStore(engine=create_engine(f"sqlite:///{tmp_path / 'state.db'}"))
    store.apply_schema()
    runs = count(1)
    return lambda: OpportunityLedger(store, "ps_opportunity_sync", f"run-{next(runs)}")


def sync(salesforce, gitlab, ledger, config=CONFIG):
    return OpportunitySync(salesforce, gitlab, ledger(), config).run(WINDOW)


def test_a_won_opportunity_gets_one_issue_and_its_url_written_back(ledger):
    salesforce, gitlab = FakeSalesforce(opportunity()), FakeGitLab()

    summary = sync(salesforce, gitlab, ledger)

    [issue] = gitlab.issues.values()
    assert issue.title == "Acme: Rollout" and find_marker(issue.description) == WON
    assert "proposal::Closed_Won" in issue.labels and issue.assignees[0].id == 7
    assert salesforce.written == {WON: {"GitLab_Issue_URL__c": issue.web_url}}
    assert summary.counts["created"] == 1 and summary.counts["written back"] == 1
    state = ledger().states()[WON]
    assert (state.status, state.issue_iid, state.issue_url) == ("synced", 1, issue.web_url)

    again = sync(salesforce, gitlab, ledger)  # nothing changed: no write at all
    assert len(gitlab.issues) == 1 and gitlab.notes == {}
    assert again.counts["unchanged"] == 1 and again.counts["created"] == 0


def test_a_change_updates_the_issue_and_notes_it_once(ledger):
    salesforce, gitlab = FakeSalesforce(opportunity()), FakeGitLab()
    sync(salesforce, gitlab, ledger)
    salesforce.records[WON] = {**salesforce.records[WON], "Amount": 2500.0}

    summary = sync(salesforce, gitlab, ledger)

    [issue] = gitlab.issues.values()
    assert "2,500" in issue.description
    [note] = gitlab.notes[1]
    assert "Amount" in note.body and "1,000" in note.body and "2,500" in note.body
    assert summary.counts["updated"] == 1
    sync(salesforce, gitlab, ledger)
    assert len(gitlab.notes[1]) == 1  # the same change is never noted twice


def test_a_note_posted_before_a_kill_is_found_not_posted_again(ledger):
    salesforce, gitlab = FakeSalesforce(opportunity()), FakeGitLab()
    sync(salesforce, gitlab, ledger)
    salesforce.records[WON] = {**salesforce.records[WON], "StageName": "Closed Lost", "IsWon": False}
    create_note = gitlab.create_note

    def post_then_die(project, iid, body):
        create_note(project, iid, body)
        raise Killed("after GitLab took the note")

    gitlab.create_note = post_then_die  # type: ignore[method-assign]
    with pytest.raises(Killed):
        sync(salesforce, gitlab, ledger)
    gitlab.create_note = create_note  # type: ignore[method-assign]
    assert [note.opportunity_id for note in ledger().pending_notes()] == [WON]

    summary = sync(salesforce, gitlab, ledger)

    assert len(gitlab.notes[1]) == 1 and CONFIG.reopened_label in gitlab.issues[1].labels
    assert ledger().pending_notes() == [] and ledger().states()[WON].flagged
    assert summary.counts.get("noted", 0) == 0 and summary.counts["unchanged"] == 1


def test_a_kill_between_the_gitlab_create_and_its_record_makes_no_second_issue(ledger):
    salesforce, gitlab = FakeSalesforce(opportunity()), FakeGitLab()
    gitlab.kill_after_create = True
    with pytest.raises(Killed):
        sync(salesforce, gitlab, ledger)
    assert ledger().states()[WON].status == "creating" and len(gitlab.issues) == 1
    gitlab.kill_after_create = False

    summary = sync(salesforce, gitlab, ledger)

    assert len(gitlab.issues) == 1  # found by its marker, adopted
    assert summary.counts["created"] == 0
    state = ledger().states()[WON]
    assert (state.status, state.issue_iid) == ("synced", 1)
    assert salesforce.written == {WON: {"GitLab_Issue_URL__c": gitlab.issues[1].web_url}}


def test_a_failed_write_back_is_named_and_retried_next_run(ledger):
    salesforce, gitlab = FakeSalesforce(opportunity()), FakeGitLab()
    update_records = salesforce.update_records
    salesforce.update_records = lambda sobject, updates: dict.fromkeys(updates, "FIELD_INTEGRITY_EXCEPTION: no")

    failed = sync(salesforce, gitlab, ledger)

    assert [(f.system, f.field) for f in failed.failures] == [("Salesforce", "GitLab_Issue_URL__c")]
    assert [w.attempts for w in ledger().pending_writebacks()] == [1]
    salesforce.update_records = update_records
    done = sync(salesforce, gitlab, ledger)
    assert done.failures == [] and done.counts["written back"] == 1 and ledger().pending_writebacks() == []


NOW = datetime(2026, 11, 23, 10, tzinfo=UTC)
INTERVAL = {"data_interval_start": datetime(2026, 11, 23, 9, 45, tzinfo=UTC), "data_interval_end": NOW}


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        ({**INTERVAL, "params": {}}, (datetime(2026, 11, 23, 9, 40, tzinfo=UTC), NOW)),  # 5 min overlap
        ({"params": {}}, (datetime(2026, 11, 22, 10, tzinfo=UTC), NOW)),  # manual: the last day
        ({**INTERVAL, "params": {"opportunity_ids": [WON]}}, None),  # only those records
        (
            {**INTERVAL, "params": {"since": "2026-11-01", "opportunity_ids": [WON]}},
            (datetime(2026, 11, 1, tzinfo=UTC), NOW),
        ),
        (
            {"params": {"since": "2026-11-01T00:00:00Z", "until": "2026-11-02T00:00:00+01:00"}},
            (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 1, 23, tzinfo=UTC)),
        ),
    ],
)
def test_the_window_of_a_run(context, expected):
    window = sync_window(context, overlap_minutes=5, now=NOW)
    assert (window and (window.start, window.end)) == expected


def test_a_bad_window_param_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="since"):
        sync_window({"params": {"since": "yesterday"}}, overlap_minutes=5)
    with pytest.raises(ConfigurationError, match="must be before"):
        sync_window({"params": {"since": "2026-11-02", "until": "2026-11-01"}}, overlap_minutes=5)


@pytest.mark.parametrize("written", [True, False], ids=["answer lost after the write", "refused before it"])
def test_a_note_answered_with_a_502_is_checked_for_and_posted_exactly_once(ledger, written):
    salesforce, gitlab = FakeSalesforce(opportunity()), FakeGitLab()
    sync(salesforce, gitlab, ledger)
    salesforce.records[WON] = {**salesforce.records[WON], "Amount": 2500.0}
    create_note = gitlab.create_note
    failures = iter([True])

    def flaky_create_note(project, iid, body):
        if next(failures, False):
            if written:
                create_note(project, iid, body)
            raise GitLabApiError(502, f"POST /projects/{project}/issues/{iid}/notes", "502 Bad Gateway")
        return create_note(project, iid, body)

    gitlab.create_note = flaky_create_note

    summary = sync(salesforce, gitlab, ledger)

    assert summary.failures == [] and summary.counts["updated"] == 1
    [note] = gitlab.notes[1]
    assert "2,500" in note.body
