"""The opportunity sync through real DAG runs against the Salesforce and GitLab stand-ins."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests

from ps_integrations import clock
from ps_integrations.domain.opportunity_sync import find_marker
from ps_integrations.hooks.gitlab import GitLabHook
from ps_integrations.hooks.salesforce import SalesforceHook
from ps_integrations.state_store import StateStore

pytestmark = pytest.mark.airflow

PROJECT = "professional-services/engagements"
SINCE = {"since": "2020-01-01T00:00:00Z"}
WRITES = ("create_issue", "update_issue", "create_note")
CONFIG = {
    "writeback_field": "GitLab_Issue_URL__c",
    "coordinator": "delivery-manager-1",
    "gitlab_requests_per_minute": 6000,
}


@pytest.fixture
def sync(product_env, monkeypatch):
    """The default seed, but no engagement issue synced yet (the seed links some to opportunities)."""
    import copy

    seed = copy.deepcopy(product_env.seed)
    seed["gitlab"]["generate"].pop("engagement_opportunities", None)
    product_env.load_seed(seed)
    monkeypatch.setenv("AIRFLOW_VAR_PS_OPPORTUNITY_SYNC_CONFIG", json.dumps(CONFIG))
    return product_env


@pytest.fixture(scope="module")
def dag():
    from airflow.dag_processing.dagbag import DagBag

    from tests.dags.test_integrity import DAGS_DIR

    return DagBag(dag_folder=str(DAGS_DIR)).get_dag("ps_opportunity_sync")


DEFAULTS = {
    "since": None,
    "until": None,
    "opportunity_ids": [],
    "dry_run": False,
    "quarantine": [],
    "release": [],
    "reason": None,
}


def run(dag, **conf):
    # Every param given explicitly: dag.test() keeps the last run's conf in the DAG's params.
    return dag.test(run_conf={**DEFAULTS, **conf})


def admin(sandbox, method, path, **kwargs):
    response = requests.request(method, sandbox.admin_url + path, timeout=10, **kwargs)
    response.raise_for_status()
    return response.json()


def load_salesforce(sandbox, **section):
    seed = dict(sandbox.seed)
    users = seed["salesforce"]["users"]
    seed["salesforce"] = {"users": users, **section}
    sandbox.load_seed(seed)


def won_ps_ids(sandbox) -> set[str]:
    backend = sandbox.standin("salesforce").backend
    ps = {rid for rid, rt in backend.records["RecordType"].items() if rt["Name"] == "Professional Services Only"}
    return {
        rid
        for rid, opp in backend.records["Opportunity"].items()
        if opp["RecordTypeId"] in ps and opp["IsWon"] and opp["StageName"] == "Closed Won" and not opp["IsDeleted"]
    }


def issues_by_opportunity(sandbox) -> dict[str, list]:
    backend = sandbox.standin("gitlab").backend
    project = backend.project(PROJECT)
    found: dict[str, list] = {}
    for issue in backend.issues.values():
        if issue.project_id == project.id and find_marker(issue.description):
            found.setdefault(find_marker(issue.description), []).append(issue)
    return found


def writes(sandbox) -> dict[str, int]:
    counts = sandbox.standin("gitlab").call_counts()
    return {name: counts.get(name, 0) for name in WRITES}


def last_summary() -> str:
    return StateStore().fetch_all("platform/runs_of_dag", {"dag_id": "ps_opportunity_sync"})[0]["summary"]


def states() -> dict[str, dict]:
    return {row["opportunity_id"]: row for row in StateStore().fetch_all("opportunity_sync/all_states")}


def test_first_sync_creates_one_issue_per_won_opportunity_and_writes_the_url_back(dag, sync):
    from airflow.utils.state import DagRunState

    assert run(dag, **SINCE).state == DagRunState.SUCCESS

    won = won_ps_ids(sync)
    issues = issues_by_opportunity(sync)
    assert set(issues) == won and all(len(found) == 1 for found in issues.values())
    assert writes(sync) == {"create_issue": len(won), "update_issue": 0, "create_note": 0}
    salesforce = sync.standin("salesforce").backend
    gitlab = sync.standin("gitlab").backend
    coordinator = gitlab.user_by_username("delivery-manager-1")
    for opportunity_id, (issue,) in issues.items():
        opportunity = salesforce.records["Opportunity"][opportunity_id]
        assert opportunity["GitLab_Issue_URL__c"] == gitlab.issue_url(issue)
        assert issue.assignee_ids == [coordinator.id]
        assert {"proposal::Closed_Won", "ps::todo"} <= set(issue.labels)
        assert any(label.startswith("close_qtr::Q") for label in issue.labels)
        assert f"/lightning/r/Opportunity/{opportunity_id}/view" in issue.description
        assert issue.due_date is not None
    row = states()[next(iter(won))]
    assert row["status"] == "synced" and row["issue_iid"] and row["content_hash"]
    summary = last_summary()
    assert summary.startswith(
        f"read {summary.split(',')[0].split()[1]}, created {len(won)}, updated 0, unchanged 0, failed 0"
    )
    assert f"written back {len(won)}" in summary and "Salesforce API usage" in summary
    audit = StateStore().fetch_all(
        "platform/audit_of_run",
        {
            "dag_id": "ps_opportunity_sync",
            "run_id": StateStore().fetch_all("platform/runs_of_dag", {"dag_id": "ps_opportunity_sync"})[0]["run_id"],
        },
    )
    assert sum(1 for row in audit if row["action"] == "created") == len(won)


def test_rerun_makes_no_gitlab_write_and_the_minimum_salesforce_calls(dag, sync):
    run(dag, **SINCE)
    sync.standin("gitlab").clear_call_counts()
    sync.standin("salesforce").clear_call_counts()

    run(dag, **SINCE)

    assert writes(sync) == dict.fromkeys(WRITES, 0)
    # describe: which fields the org has (CurrencyIsoCode only with multi-currency), once a run (#17)
    assert sync.standin("salesforce").call_counts() == {"soap_login": 1, "describe_sobject": 1, "query_all": 1}
    assert ", created 0, updated 0," in last_summary()


def _opportunity(sync, issue_index=0):
    issues = issues_by_opportunity(sync)
    opportunity_id = sorted(issues)[issue_index]
    return opportunity_id, issues[opportunity_id][0]


def test_changes_update_only_the_managed_part_and_say_what_changed(dag, sync):
    run(dag, **SINCE)
    opportunity_id, issue = _opportunity(sync)
    project = GitLabHook().client.projects.get(PROJECT)
    human = project.issues.get(issue.iid)
    human.description = "PM notes: kick-off on Monday\n\n" + human.description + "\nRisks: none yet"
    human.labels = [*human.labels, "ps::in-progress"]
    human.save()
    salesforce = SalesforceHook()
    before = salesforce.get_record("Opportunity", opportunity_id)
    salesforce.update_record("Opportunity", opportunity_id, {"Amount": 123456.0, "CloseDate": "2027-01-15"})
    sync.standin("gitlab").clear_call_counts()

    run(dag, **SINCE)

    assert writes(sync) == {"create_issue": 0, "update_issue": 1, "create_note": 1}
    updated = project.issues.get(issue.iid)
    assert updated.description.startswith("PM notes: kick-off on Monday")
    assert updated.description.rstrip().endswith("Risks: none yet") or "Risks: none yet" in updated.description
    assert "123,456\\.00" in updated.description
    assert "ps::in-progress" in updated.labels and "ps::todo" not in updated.labels  # human label change kept
    assert "close_qtr::Q427" in updated.labels
    [note] = [n for n in updated.notes.list(get_all=True) if "Opportunity updated" in n.body]
    assert f"Amount: {before['Amount']:,.2f}".replace(",", ",").replace(".", "\\.") in note.body
    assert "→ 123,456\\.00" in note.body
    assert f"Close date: {before['CloseDate']} → 2027-01-15".replace("-", "\\-") in note.body


def test_reopened_then_won_again_is_labelled_and_unlabelled(dag, sync):
    run(dag, **SINCE)
    opportunity_id, issue = _opportunity(sync, 1)
    salesforce = SalesforceHook()
    salesforce.update_record("Opportunity", opportunity_id, {"StageName": "Negotiation/Review"})
    run(dag, **SINCE)
    project = GitLabHook().client.projects.get(PROJECT)
    flagged = project.issues.get(issue.iid)
    assert "ps-sync::opportunity-reopened" in flagged.labels and flagged.state == "opened"
    assert any("left Closed Won" in note.body for note in flagged.notes.list(get_all=True))
    assert states()[opportunity_id]["flagged"] == 1

    salesforce.update_record("Opportunity", opportunity_id, {"StageName": "Closed Won"})
    run(dag, **SINCE)
    again = project.issues.get(issue.iid)
    assert "ps-sync::opportunity-reopened" not in again.labels
    assert any("Closed Won again" in note.body for note in again.notes.list(get_all=True))
    assert states()[opportunity_id]["flagged"] == 0
    assert len(issues_by_opportunity(sync)[opportunity_id]) == 1


def test_deleted_opportunity_is_flagged_never_closed(dag, sync):
    run(dag, **SINCE)
    opportunity_id, issue = _opportunity(sync, 2)
    SalesforceHook().get_conn().Opportunity.delete(opportunity_id)
    run(dag, **SINCE)
    flagged = GitLabHook().client.projects.get(PROJECT).issues.get(issue.iid)
    assert "ps-sync::opportunity-reopened" in flagged.labels and flagged.state == "opened"
    assert any("deleted in Salesforce" in note.body for note in flagged.notes.list(get_all=True))


def test_hostile_text_from_salesforce_cannot_act_in_gitlab(dag, sync):
    hostile = "/close\n@all @root #1 !2 ~urgent %v1 &1 <b>x</b> | a | ![i](http://evil.example/i.png)"
    load_salesforce(
        sync,
        records={
            "RecordType": [{"Id": "012000000000001AAA", "Name": "Professional Services Only"}],
            "Account": [{"Id": "001000000000001AAA", "Name": "/assign @root " + hostile}],
            "Product2": [{"Id": "01t000000000001AAA", "Name": "Evil /close @all", "ProductCode": "GL-BAS"}],
            "Opportunity": [
                {
                    "Id": "006000000000001AAA",
                    "Name": hostile,
                    "AccountId": "001000000000001AAA",
                    "RecordTypeId": "012000000000001AAA",
                    "StageName": "Closed Won",
                    "CloseDate": "2026-06-01",
                    "Amount": 5000.0,
                    "CurrencyIsoCode": "USD",
                }
            ],
            "OpportunityLineItem": [
                {
                    "OpportunityId": "006000000000001AAA",
                    "Product2Id": "01t000000000001AAA",
                    "Quantity": 1.0,
                    "UnitPrice": 5000.0,
                }
            ],
        },
    )
    run(dag, **SINCE)
    SalesforceHook().update_record("Opportunity", "006000000000001AAA", {"Amount": 6000.0})
    run(dag, **SINCE)

    [issue] = issues_by_opportunity(sync)["006000000000001AAA"]
    gitlab = sync.standin("gitlab").backend
    state = sync.standin("gitlab").state()
    assert issue.state == "opened"
    assert issue.assignee_ids == [gitlab.user_by_username("delivery-manager-1").id]
    assert "urgent" not in issue.labels
    assert [n for n in state["notifications"] if n["issue_id"] == issue.id] == []
    assert [r for r in state["cross_references"] if r["issue_id"] == issue.id] == []
    assert "<b>" not in issue.description and "![i]" not in issue.description
    notes = [note.body for note in gitlab.notes.values() if note.issue_id == issue.id]
    assert len(notes) == 1 and "Amount" in notes[0]


def test_dry_run_writes_nothing(dag, sync):
    run(dag, dry_run=True, **SINCE)
    assert writes(sync) == dict.fromkeys(WRITES, 0)
    assert "update_collection" not in sync.standin("salesforce").call_counts()
    assert states() == {}
    summary = last_summary()
    assert f"would create {len(won_ps_ids(sync))}" in summary and "dry run: nothing was written" in summary


def test_failed_record_fails_the_run_by_name_then_quarantine_and_release(dag, sync):
    from airflow.utils.state import DagRunState

    load_salesforce(sync, generate={"opportunities": 30, "random_seed": 3})
    admin(sync, "POST", "/gitlab/faults/script", json={"endpoint": "create_issue", "kind": "bad_request", "count": 1})
    first = run(dag, **SINCE)
    assert first.state == DagRunState.FAILED
    [failed] = [
        key for key, row in states().items() if row["status"] in ("failed", "creating") and row["failure_reason"]
    ]
    assert "GitLab" in states()[failed]["failure_reason"] and "400" in states()[failed]["failure_reason"]
    assert f"Opportunity {failed}" in last_summary() or "failed 1" in last_summary()
    assert set(issues_by_opportunity(sync)) == won_ps_ids(sync) - {failed}  # the good ones went through

    admin(sync, "POST", "/gitlab/faults/script", json={"endpoint": "create_issue", "kind": "bad_request", "count": 5})
    parked = run(dag, quarantine=[failed], reason="GitLab refuses the title", **SINCE)
    assert parked.state == DagRunState.SUCCESS
    assert f"quarantined 1: {failed} (GitLab refuses the title)" in last_summary()
    assert run(dag, **SINCE).state == DagRunState.SUCCESS
    assert f"quarantined 1: {failed}" in last_summary()  # listed in every summary

    sync.standin("gitlab").faults.reset()
    released = run(dag, release=[failed])
    assert released.state == DagRunState.SUCCESS
    assert len(issues_by_opportunity(sync)[failed]) == 1
    assert "quarantined" not in last_summary()


def test_faults_cause_no_duplicate_and_lose_nothing(dag, sync):
    admin(sync, "PUT", "/gitlab/faults", json={"retry_after_scale": 1 / 60})
    admin(
        sync,
        "POST",
        "/gitlab/faults/script",
        json={"endpoint": "create_issue", "kind": "server_error", "count": 2, "status": 502},
    )
    admin(sync, "POST", "/gitlab/faults/script", json={"endpoint": "create_issue", "kind": "rate_limited", "count": 2})
    admin(
        sync, "POST", "/salesforce/faults/script", json={"endpoint": "query_all", "kind": "session_expired", "count": 1}
    )

    run(dag, **SINCE)

    issues = issues_by_opportunity(sync)
    assert set(issues) == won_ps_ids(sync)
    assert all(len(found) == 1 for found in issues.values())
    assert sync.standin("salesforce").call_counts()["soap_login"] == 2


def test_more_records_with_one_timestamp_than_a_page_are_all_read(dag, sync):
    stamp = "2026-10-01T12:00:00.000+0000"
    load_salesforce(
        sync,
        page_size=200,
        records={
            "RecordType": [{"Id": "012000000000001AAA", "Name": "Professional Services Only"}],
            "Account": [{"Id": "001000000000001AAA", "Name": "Same Time Inc."}],
            "Opportunity": [
                {
                    "Id": f"006000000{n:06d}AAA",
                    "Name": f"Deal {n}",
                    "AccountId": "001000000000001AAA",
                    "RecordTypeId": "012000000000001AAA",
                    "StageName": "Closed Won",
                    "CloseDate": "2026-10-01",
                    "Amount": 100.0,
                    "SystemModstamp": stamp,
                }
                for n in range(450)
            ],
        },
    )
    run(dag, since="2026-10-01T11:45:00Z", until="2026-10-01T12:00:01Z")

    assert len(issues_by_opportunity(sync)) == 450
    assert sync.standin("salesforce").call_counts()["query_all_more"] == 2  # three pages


def test_crash_between_issue_created_and_state_saved_leaves_no_duplicate(dag, sync, tmp_path):
    """Kill the task process (SIGKILL) while GitLab has created the issue but not yet answered."""
    load_salesforce(sync, generate={"opportunities": 30, "random_seed": 5})
    admin(
        sync,
        "POST",
        "/gitlab/faults/script",
        json={"endpoint": "create_issue", "kind": "slow_response", "count": 1, "delay_ms": 30000},
    )
    airflow = os.path.join(os.path.dirname(sys.executable), "airflow")
    log_file = (tmp_path / "crash.log").open("wb")
    process = subprocess.Popen(
        [
            airflow,
            "dags",
            "test",
            "ps_opportunity_sync",
            clock.now().isoformat(),
            "--conf",
            json.dumps({**DEFAULTS, **SINCE}),
        ],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not issues_by_opportunity(sync):
        assert process.poll() is None, (tmp_path / "crash.log").read_text()[-3000:]
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    log_file.close()
    assert process.returncode == -signal.SIGKILL
    assert any(row["status"] == "creating" for row in states().values())

    sync.standin("gitlab").faults.reset()
    run(dag, **SINCE)

    issues = issues_by_opportunity(sync)
    assert set(issues) == won_ps_ids(sync)
    assert all(len(found) == 1 for found in issues.values())
    assert all(row["status"] == "synced" for row in states().values() if row["opportunity_id"] in issues)
    # #17.4: issues saved before the kill get their URL written back too
    salesforce, gitlab = sync.standin("salesforce").backend, sync.standin("gitlab").backend
    for opportunity_id, (issue,) in issues.items():
        assert salesforce.records["Opportunity"][opportunity_id]["GitLab_Issue_URL__c"] == gitlab.issue_url(issue)
    assert StateStore().fetch_all("opportunity_sync/all_pending") == []


@pytest.mark.parametrize("status", [502, 504])
def test_a_create_whose_answer_a_proxy_lost_is_not_posted_twice(dag, sync, status):
    """A 5xx after GitLab created the issue (a proxy gave up on the upstream): the POST is never
    re-sent blindly. After a 502 the run finds the issue among the newest by its marker and goes on;
    after a 504 (the request may still be running) the run fails naming the opportunities and the next
    run adopts the issues through the marker index."""
    load_salesforce(sync, generate={"opportunities": 30, "random_seed": 5})
    admin(
        sync,
        "POST",
        "/gitlab/faults/script",
        json={"endpoint": "create_issue", "kind": "answer_lost", "count": 3, "status": status},
    )

    first = run(dag, **SINCE)

    assert sync.standin("gitlab").call_counts()["create_issue"] == len(won_ps_ids(sync))  # one POST each
    if status == 504:
        assert first.state == "failed"
        assert sum(row["status"] == "creating" for row in states().values()) == 3
        run(dag, **SINCE)
    else:
        assert first.state == "success"
    issues = issues_by_opportunity(sync)
    assert set(issues) == won_ps_ids(sync)
    assert all(len(found) == 1 for found in issues.values())
    assert all(row["status"] == "synced" for row in states().values() if row["opportunity_id"] in issues)


def test_runs_over_each_interval_give_the_same_end_state_as_one_run_over_the_range(dag, sync):
    """What a backfill does (one run per data interval) ends where one manual range run ends."""
    base = datetime(2026, 11, 5, 8, 0, tzinfo=UTC)  # after the DAG's start_date
    records = []
    for n in range(16):
        stamp = (base + timedelta(minutes=7 * n + 1)).strftime("%Y-%m-%dT%H:%M:%S.000+0000")
        records.append(
            {
                "Id": f"006000000{n:06d}AAA",
                "Name": f"Deal {n}",
                "AccountId": "001000000000001AAA",
                "RecordTypeId": "012000000000001AAA",
                "StageName": "Closed Won" if n % 4 else "Closed Lost",
                "CloseDate": "2026-10-05",
                "Amount": 1000.0 + n,
                "SystemModstamp": stamp,
            }
        )
    section = {
        "records": {
            "RecordType": [{"Id": "012000000000001AAA", "Name": "Professional Services Only"}],
            "Account": [{"Id": "001000000000001AAA", "Name": "Interval Co"}],
            "Opportunity": records,
        }
    }

    def end_state():
        return {
            key: (
                found[0].title,
                sorted(found[0].labels),
                found[0].description.split("<!-- ps-integrations:managed:end")[0],
            )
            for key, found in issues_by_opportunity(sync).items()
        }

    load_salesforce(sync, **section)
    for step in range(1, 10):
        dag.test(logical_date=base + timedelta(minutes=15 * step), run_conf=DEFAULTS)
    per_interval = end_state()

    load_salesforce(sync, **section)
    with StateStore().transaction() as connection:
        from sqlalchemy import text

        connection.execute(text("DELETE FROM opportunity_sync"))
    run(dag, since=base.isoformat(), until=(base + timedelta(hours=2, minutes=15)).isoformat())
    assert end_state() == per_interval
    assert len(per_interval) == 12


@pytest.mark.calendar
def test_a_change_that_leaves_the_modstamp_alone_is_picked_up_by_a_range_resync(dag, sync):
    run(dag, **SINCE)
    opportunity_id, issue = _opportunity(sync, 3)
    salesforce = sync.standin("salesforce").backend
    account_id = salesforce.records["Opportunity"][opportunity_id]["AccountId"]
    SalesforceHook().update_record(
        "Account", account_id, {"Name": "Renamed Holdings"}
    )  # the opportunity's stamp is unchanged
    window_end = clock.now()

    dag.test(
        logical_date=window_end.replace(second=0, microsecond=0) - timedelta(minutes=window_end.minute % 15),
        run_conf=DEFAULTS,
    )
    assert not issue.title.startswith("Renamed Holdings")

    run(dag, **SINCE)
    title = GitLabHook().client.projects.get(PROJECT).issues.get(issue.iid).title
    assert title.startswith("Renamed Holdings")


def test_summary_warns_when_salesforce_api_usage_passes_80_percent(dag, sync):
    load_salesforce(sync, daily_api_limit=100, api_usage=85, generate={"opportunities": 10, "random_seed": 2})
    run(dag, **SINCE)
    # 88, not 87: the run's describe (which fields the org has, #17) is one API call more
    assert "WARNING Salesforce API usage 88/100 (88%), above 80%" in last_summary()


# --- issue #17: correct under what real GitLab and Salesforce do ---------------------------------------
PS_TYPE = {"Id": "012000000000001AAA", "Name": "Professional Services Only"}
ACCOUNT = {"Id": "001000000000001AAA", "Name": "Acme Corp"}


def _won(n: int, **fields):
    return {
        "Id": f"006000000{n:06d}AAA",
        "Name": f"Deal {n}",
        "AccountId": ACCOUNT["Id"],
        "RecordTypeId": PS_TYPE["Id"],
        "StageName": "Closed Won",
        "CloseDate": "2026-10-05",
        "Amount": 1000.0 + n,
        **fields,
    }


def _failure_mail(dag, result, task_id):
    """The failure mail body of a task of a finished run, rendered by the DAG's own notifier template.

    dag.test() hands failure callbacks to the next run's loop, so the SMTP sink cannot be waited on
    here; the template is rendered with the failed run's real task instance and conf instead."""
    from ps_integrations.conventions import FAILURE_BODY

    ti = result.get_task_instance(task_id)
    context = {
        "ti": ti,
        "task": dag.get_task(task_id),
        "params": dict(dag.params),
        "dag_run": result,
        "data_interval_start": result.data_interval_start,
        "data_interval_end": result.data_interval_end,
        "exception": "boom",
    }
    return dag.get_template_env().from_string(FAILURE_BODY).render(**context)


def _notes(sync, issue_id):
    return [note.body for note in sync.standin("gitlab").backend.notes.values() if note.issue_id == issue_id]


def _crash_while(sync, tmp_path, endpoint, landed, conf=None):
    """Run the DAG in a process, hold back `endpoint`'s answer, SIGKILL it once `landed()` is true."""
    admin(
        sync,
        "POST",
        "/gitlab/faults/script",
        json={"endpoint": endpoint, "kind": "slow_response", "count": 1, "delay_ms": 30000},
    )
    airflow = os.path.join(os.path.dirname(sys.executable), "airflow")
    log_path = tmp_path / f"crash-{endpoint}.log"
    log_file = log_path.open("wb")
    process = subprocess.Popen(
        [
            airflow,
            "dags",
            "test",
            "ps_opportunity_sync",
            clock.now().isoformat(),
            "--conf",
            json.dumps({**DEFAULTS, **(conf or SINCE)}),
        ],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not landed():
        assert process.poll() is None, log_path.read_text()[-3000:]
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    log_file.close()
    assert process.returncode == -signal.SIGKILL
    sync.standin("gitlab").faults.reset()


def test_reopening_never_removes_a_label_the_team_set(dag, sync):
    """#17.1: the reopened label lives in a scope of its own; ps::in-progress survives reopen and re-win."""
    from airflow.utils.state import DagRunState

    run(dag, **SINCE)
    opportunity_id, issue = _opportunity(sync, 1)
    project = GitLabHook().client.projects.get(PROJECT)
    human = project.issues.get(issue.iid)
    human.labels = [label for label in human.labels if label != "ps::todo"] + ["ps::in-progress"]
    human.save()
    salesforce = SalesforceHook()

    salesforce.update_record("Opportunity", opportunity_id, {"StageName": "Negotiation/Review"})
    assert run(dag, **SINCE).state == DagRunState.SUCCESS
    flagged = project.issues.get(issue.iid)
    assert {"ps::in-progress", "ps-sync::opportunity-reopened"} <= set(flagged.labels)

    salesforce.update_record("Opportunity", opportunity_id, {"StageName": "Closed Won"})
    assert run(dag, **SINCE).state == DagRunState.SUCCESS
    again = project.issues.get(issue.iid)
    assert "ps::in-progress" in again.labels and "ps-sync::opportunity-reopened" not in again.labels


def test_a_sync_label_colliding_with_the_teams_labels_is_refused_clearly(dag, sync, monkeypatch):
    """#17.1: config sharing a scope with base_labels fails the run before any write; a label on the
    issue in the sync label's scope fails that record by name and is left alone."""
    from airflow.utils.state import DagRunState

    monkeypatch.setenv(
        "AIRFLOW_VAR_PS_OPPORTUNITY_SYNC_CONFIG", json.dumps({**CONFIG, "reopened_label": "ps::opportunity-reopened"})
    )
    result = run(dag, **SINCE)
    assert result.state == DagRunState.FAILED
    assert result.get_task_instance("prepare").state == "failed"  # before any read or write
    assert result.get_task_instance("sync_opportunities").state == "upstream_failed"
    assert writes(sync) == dict.fromkeys(WRITES, 0)

    monkeypatch.setenv("AIRFLOW_VAR_PS_OPPORTUNITY_SYNC_CONFIG", json.dumps(CONFIG))
    run(dag, **SINCE)
    opportunity_id, issue = _opportunity(sync, 2)
    project = GitLabHook().client.projects.get(PROJECT)
    human = project.issues.get(issue.iid)
    human.labels = [*human.labels, "ps-sync::on-hold"]  # someone uses the sync's scope after all
    human.save()
    SalesforceHook().update_record("Opportunity", opportunity_id, {"StageName": "Negotiation/Review"})

    assert run(dag, **SINCE).state == DagRunState.FAILED
    assert "ps-sync::on-hold" in project.issues.get(issue.iid).labels
    reason = states()[opportunity_id]["failure_reason"]
    assert "would remove 'ps-sync::on-hold'" in reason and f"issue #{issue.iid}" in reason
    assert f"failed: {opportunity_id} (GitLab)" in last_summary()


def test_changes_while_not_won_are_noted_each_time(dag, sync):
    """#17.2: an Amount change while reopened gives a note then, not a silent description at the re-win."""
    run(dag, **SINCE)
    opportunity_id, issue = _opportunity(sync, 0)
    salesforce = SalesforceHook()
    amount = salesforce.get_record("Opportunity", opportunity_id)["Amount"]
    salesforce.update_record("Opportunity", opportunity_id, {"StageName": "Negotiation/Review"})
    run(dag, **SINCE)
    sync.standin("gitlab").clear_call_counts()

    salesforce.update_record("Opportunity", opportunity_id, {"Amount": 4321.0})
    run(dag, **SINCE)

    assert writes(sync) == {"create_issue": 0, "update_issue": 0, "create_note": 1}
    notes = _notes(sync, issue.id)
    [changed] = [body for body in notes if "Amount" in body and "4,321" in body]
    assert f"Amount: {amount:,.2f}".replace(".", "\\.") in changed and "→ 4,321\\.00" in changed
    assert ", noted 1" in last_summary()

    salesforce.update_record("Opportunity", opportunity_id, {"StageName": "Closed Won"})
    run(dag, **SINCE)
    [rewon] = [body for body in _notes(sync, issue.id) if "Closed Won again" in body]
    assert "Amount" not in rewon  # already reported while reopened
    assert "4,321\\.00" in GitLabHook().client.projects.get(PROJECT).issues.get(issue.iid).description


def test_a_note_posted_just_before_a_crash_is_not_posted_again(dag, sync, tmp_path):
    """#17.3: killed after GitLab accepted the note, before the state was saved: the next run finds the
    note's hidden change id and posts nothing twice."""
    run(dag, **SINCE)
    opportunity_id, issue = _opportunity(sync, 0)
    SalesforceHook().update_record("Opportunity", opportunity_id, {"Amount": 98765.0})

    _crash_while(sync, tmp_path, "create_note", lambda: any("98,765" in body for body in _notes(sync, issue.id)))
    assert any(row["kind"] == "note" for row in StateStore().fetch_all("opportunity_sync/all_pending"))

    run(dag, **SINCE)
    run(dag, **SINCE)
    assert len([body for body in _notes(sync, issue.id) if "98,765" in body]) == 1
    assert StateStore().fetch_all("opportunity_sync/all_pending") == []
    assert json.loads(states()[opportunity_id]["snapshot_json"])["amount"] == "98,765.00 USD"


def test_a_failed_write_back_fails_the_run_by_name_and_is_retried_until_done(dag, sync):
    """#17.4: the write-back stays pending in the state store, is retried every run, fails runs by name."""
    from airflow.utils.state import DagRunState

    load_salesforce(sync, records={"RecordType": [PS_TYPE], "Account": [ACCOUNT], "Opportunity": [_won(1), _won(2)]})
    admin(
        sync,
        "POST",
        "/salesforce/faults/script",
        json={"endpoint": "update_collection", "kind": "server_error", "count": 2},
    )
    assert run(dag, **SINCE).state == DagRunState.FAILED
    summary = last_summary()
    assert "failed 2" in summary and "006000000000001AAA (Salesforce GitLab_Issue_URL__c)" in summary
    pending = StateStore().fetch_all("opportunity_sync/all_pending")
    assert [(row["opportunity_id"], row["kind"], row["attempts"]) for row in pending] == [
        ("006000000000001AAA", "writeback", 1),
        ("006000000000002AAA", "writeback", 1),
    ]
    assert run(dag, **SINCE).state == DagRunState.FAILED  # a later run that reads nothing new retries too
    pending = StateStore().fetch_all("opportunity_sync/all_pending")
    assert [row["attempts"] for row in pending] == [2, 2] and "UNKNOWN_EXCEPTION" in pending[0]["last_error"]
    assert "failed 2" in last_summary()

    assert run(dag, **SINCE).state == DagRunState.SUCCESS
    salesforce = sync.standin("salesforce").backend
    gitlab = sync.standin("gitlab").backend
    for opportunity_id, (issue,) in issues_by_opportunity(sync).items():
        assert salesforce.records["Opportunity"][opportunity_id]["GitLab_Issue_URL__c"] == gitlab.issue_url(issue)
    assert StateStore().fetch_all("opportunity_sync/all_pending") == []
    assert "written back 2" in last_summary()


def test_a_rerun_of_an_interval_reads_what_it_read_before_our_write_back(dag, sync):
    """#17.5: the write-back moves SystemModstamp out of the interval; the re-run still reads those records."""
    base = datetime(2026, 11, 5, 8, 0, tzinfo=UTC)
    stamp = (base - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%S.000+0000")
    load_salesforce(
        sync,
        records={
            "RecordType": [PS_TYPE],
            "Account": [ACCOUNT],
            "Opportunity": [_won(n, SystemModstamp=stamp) for n in range(1, 4)],
        },
    )
    dag.test(logical_date=base, run_conf=DEFAULTS)
    first = last_summary()
    assert first.startswith("read 3, created 3") and "written back 3" in first
    moved = sync.standin("salesforce").backend.records["Opportunity"]["006000000000001AAA"]["SystemModstamp"]
    assert moved > stamp  # our own write-back moved it

    dag.test(logical_date=base, run_conf=DEFAULTS)
    assert last_summary().startswith("read 3, created 0, updated 0, unchanged 3")


def test_an_empty_name_or_close_date_fails_that_record_by_name(dag, sync):
    """#17.6: clear errors naming record, field and system; the good record still gets its issue."""
    from airflow.utils.state import DagRunState

    load_salesforce(
        sync,
        records={
            "RecordType": [PS_TYPE],
            "Account": [ACCOUNT],
            "Opportunity": [_won(1), _won(2, Name=""), _won(3, CloseDate=None)],
        },
    )
    assert run(dag, **SINCE).state == DagRunState.FAILED
    assert set(issues_by_opportunity(sync)) == {"006000000000001AAA"}
    rows = states()
    assert "Salesforce" in rows["006000000000002AAA"]["failure_reason"]
    assert "(field Name)" in rows["006000000000002AAA"]["failure_reason"]
    assert "(field CloseDate)" in rows["006000000000003AAA"]["failure_reason"]
    assert "006000000000002AAA (Salesforce Name), 006000000000003AAA (Salesforce CloseDate)" in last_summary()


def test_titles_are_left_alone_unless_gitlab_would_act_on_them(dag, sync):
    """#17.7: no invisible characters in ordinary titles; references and mentions in titles do nothing."""
    load_salesforce(
        sync,
        records={
            "RecordType": [PS_TYPE],
            "Account": [ACCOUNT],
            "Opportunity": [
                _won(1, Name="Rollout 2027 (phase 2) - EMEA & APAC: 50% done!"),
                _won(2, Name="Fix #12 for @all, see !3 and group/project#4 - mail ops@example.com"),
            ],
        },
    )
    run(dag, **SINCE)

    found = issues_by_opportunity(sync)
    [ordinary] = found["006000000000001AAA"]
    [hostile] = found["006000000000002AAA"]
    assert ordinary.title == "Acme Corp: Rollout 2027 (phase 2) - EMEA & APAC: 50% done!"
    assert hostile.title.replace("\u200b", "") == (
        "Acme Corp: Fix #12 for @all, see !3 and group/project#4 - mail ops@example.com"
    )
    assert hostile.title.count("\u200b") == 4  # #12, @all, !3, #4 - nothing else
    state = sync.standin("gitlab").state()
    assert [n for n in state["notifications"] if n["issue_id"] == hostile.id] == []
    assert [r for r in state["cross_references"] if r["issue_id"] == hostile.id] == []


def test_failure_mail_and_summary_say_what_happened(dag, sync):
    """#17.8: "after 1 try", the window a manual run read, and a short summary naming the records."""
    from airflow.utils.state import DagRunState

    load_salesforce(
        sync, records={"RecordType": [PS_TYPE], "Account": [ACCOUNT], "Opportunity": [_won(n) for n in range(1, 8)]}
    )
    admin(sync, "POST", "/gitlab/faults/script", json={"endpoint": "create_issue", "kind": "bad_request", "count": 5})
    result = run(dag, since="2026-01-01T00:00:00Z", until="2026-12-01T00:00:00Z")

    assert result.state == DagRunState.FAILED
    summary = last_summary()
    assert "failed 5" in summary and " and 2 more (every one with its reason in the task log" in summary
    assert summary.count("0060000000") == 3 and len(summary) < 600
    mail = _failure_mail(dag, result, "summarize")
    assert "failed\nafter 1 try.</p>" in mail and "1 tries" not in mail
    assert "Window read: 2026-01-01T00:00:00Z to 2026-12-01T00:00:00Z" in mail and "Data interval" not in mail


# --- issue #17: what real Salesforce and GitLab do ------------------------------------------------------
def _load_gitlab(sandbox, **settings):
    seed = dict(sandbox.seed)
    seed["gitlab"] = {**seed["gitlab"], "application_settings": settings}
    sandbox.load_seed(seed)


def test_every_line_item_of_a_large_deal_reaches_the_issue(dag, sync):
    """Child sub-query paging: Salesforce returns OpportunityLineItems partially with its own
    nextRecordsUrl inside the parent; none of the items is dropped."""
    products = [{"Id": f"01t00000000000{n}AAA", "Name": f"Module {n}", "ProductCode": "GL-BAS"} for n in range(1, 9)]
    load_salesforce(
        sync,
        child_page_size=3,
        records={
            "RecordType": [PS_TYPE],
            "Account": [ACCOUNT],
            "Product2": products,
            "Opportunity": [_won(1)],
            "OpportunityLineItem": [
                {"OpportunityId": "006000000000001AAA", "Product2Id": product["Id"], "Quantity": 1.0, "UnitPrice": 10.0}
                for product in products
            ],
        },
    )
    run(dag, **SINCE)

    [issue] = issues_by_opportunity(sync)["006000000000001AAA"]
    assert all(f"| GL\\-BAS | Module {n} |" in issue.description for n in range(1, 9))
    assert sync.standin("salesforce").call_counts()["query_all_more"] == 2  # 3 + 3 + 2 line items


def test_an_org_without_multi_currency_syncs(dag, sync):
    """No CurrencyIsoCode in the org: a query naming it would fail with INVALID_FIELD; describe tells."""
    from airflow.utils.state import DagRunState

    load_salesforce(
        sync,
        multi_currency=False,
        records={"RecordType": [PS_TYPE], "Account": [ACCOUNT], "Opportunity": [_won(1), _won(2)]},
    )
    assert run(dag, **SINCE).state == DagRunState.SUCCESS

    [issue] = issues_by_opportunity(sync)["006000000000001AAA"]
    assert "1,001\\.00 USD" in issue.description
    assert "org without multi-currency: amounts in USD" in last_summary()
    assert sync.standin("salesforce").call_counts()["describe_sobject"] == 1
    assert run(dag, **SINCE).state == DagRunState.SUCCESS  # and nothing changes on a re-run
    assert ", created 0, updated 0, unchanged 2" in last_summary()


def test_marker_index_needs_no_search_and_notes_keep_to_their_own_limit(dag, product_env, monkeypatch):
    """GitLab limits search listings (30/min) and note creation (300/min) apart from the global
    limit: the marker index lists without search; notes are paced for their limit; no 429."""
    _load_gitlab(product_env, search_rate_limit=1, notes_create_limit=4, rate_limit_interval_seconds=2)
    monkeypatch.setenv("AIRFLOW_VAR_PS_OPPORTUNITY_SYNC_CONFIG", json.dumps({**CONFIG, "gitlab_notes_per_minute": 60}))
    gitlab = product_env.standin("gitlab")
    linked = {key for key, found in issues_by_opportunity(product_env).items()}
    assert linked  # the default seed has issues synced before the state store existed

    run(dag, **SINCE)
    assert set(issues_by_opportunity(product_env)) == won_ps_ids(product_env) | linked
    assert all(len(found) == 1 for found in issues_by_opportunity(product_env).values())
    total = sum(1 for issue in gitlab.backend.issues.values() if issue.project_id == gitlab.backend.project(PROJECT).id)
    assert gitlab.call_counts()["list_project_issues"] <= -(-total // 100)  # ceil(issues / 100)

    salesforce = SalesforceHook()
    for opportunity_id in sorted(won_ps_ids(product_env))[:7]:
        salesforce.update_record("Opportunity", opportunity_id, {"Amount": 777.0})
    gitlab.clear_call_counts()
    started = time.monotonic()
    run(dag, **SINCE)
    assert gitlab.call_counts()["create_note"] == 7 and time.monotonic() - started >= 5  # paced: <= 4 per 2 s
    assert gitlab.state()["application_rate_limited"] == {}
    assert gitlab.faults.injected == {}
