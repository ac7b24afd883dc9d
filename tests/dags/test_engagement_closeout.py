"""Engagement close-out through real DAG runs: GitLab and Salesforce stand-ins, the exports store, and
approved hours recorded exactly as the timesheet roll-up records its exports (its ExportLedger)."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from ps_integrations import clock
from ps_integrations.domain.timesheets import Entry
from ps_integrations.state_store import StateStore

pytestmark = pytest.mark.airflow

PROJECT = "professional-services/closeout-test"
SEEDED = "professional-services/engagements"
CONFIG = {
    "engagements_project": PROJECT,
    "controller": "controller@ps.example.com",
    "finance_business_partner": "FBP.Sales@ps.example.com",  # resolved case-insensitively
}
PARAMS = {"engagement_iids": [], "since": None, "until": None}
CLOSED = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def dag():
    from airflow.dag_processing.dagbag import DagBag

    from tests.dags.test_integrity import DAGS_DIR

    return DagBag(dag_folder=str(DAGS_DIR)).get_dag("ps_engagement_closeout")


@pytest.fixture
def closeout(product_env, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_PS_ENGAGEMENT_CLOSEOUT_CONFIG", json.dumps(CONFIG))
    gitlab = product_env.standin("gitlab").backend
    gitlab.add_project(gitlab.group("professional-services"), "closeout-test", "Close-out test engagements")
    StateStore().apply_schema()
    yield product_env
    gitlab.clock = clock.now


def run(dag, **params):
    return dag.test(run_conf={**PARAMS, **params})


def window(moment: datetime) -> dict:
    return {
        "since": (moment - timedelta(minutes=30)).isoformat(),
        "until": (moment + timedelta(minutes=30)).isoformat(),
    }


def last_run() -> dict:
    row = StateStore().fetch_all("platform/runs_of_dag", {"dag_id": "ps_engagement_closeout"})[0]
    return json.loads(row["counts_json"])


def engineers(sandbox) -> dict[str, object]:
    """One GitLab user per role (by job title), as the roll-up maps them."""
    titles = {
        "Professional Services Engineer": "engineer",
        "Project Manager": "project_manager",
        "Technical Architect": "technical_architect",
    }
    found: dict[str, object] = {}
    for user in sandbox.standin("gitlab").backend.users.values():
        role = titles.get(user.job_title)
        if role and role not in found:
            found[role] = user
    return found


def engagement(sandbox, kind="Custom SOW", amount=30000.0, budget=100.0, marker=True, currency="USD"):
    """An opportunity in Salesforce and its engagement issue in GitLab (as the opportunity sync makes them)."""
    salesforce = sandbox.standin("salesforce").backend
    account = salesforce.insert("Account", {"Name": "Closeout Corp", "Id": None})
    opportunity = salesforce.insert(
        "Opportunity",
        {
            "Id": None,
            "Name": f"Closeout Corp - {kind}",
            "AccountId": account["Id"],
            "StageName": "Closed Won",
            "Amount": amount,
            "Budgeted_Hours__c": budget,
            "CurrencyIsoCode": currency,
        },
    )
    gitlab = sandbox.standin("gitlab").backend
    bot = next(user for user in gitlab.users.values() if user.bot)
    description = "Engagement for Closeout Corp."
    if marker:
        description += f"\n\n<!-- ps-integrations:opportunity-id={opportunity['Id']} -->"
    issue = gitlab.create_issue(
        gitlab.project(PROJECT),
        bot,
        {"title": f"Closeout Corp: {kind}", "labels": ["ps::in-progress", kind], "description": description},
    )
    return issue, opportunity


def approve(sandbox, issue, hours: dict[str, float], period: str, unapproved: float = 0) -> None:
    """Log time on the issue in GitLab and record it as the roll-up records an approved export."""
    from ps_integrations.jobs.timesheets import ExportLedger

    gitlab = sandbox.standin("gitlab").backend
    url = gitlab.issue_url(issue)
    people = engineers(sandbox)
    ledger = ExportLedger(StateStore())
    monday = date.fromisocalendar(int(period[:4]), int(period[-2:]), 1)
    for role, amount in hours.items():
        user = people[role]
        log = gitlab.add_timelog(
            issue, user, int(amount * 3600), datetime.combine(monday, datetime.min.time(), UTC), None
        )
        entry = Entry(str(log.id), user.username, monday, url, "Project Work", int(amount * 3600))
        ledger.lock(f"{period}-{role}", user.username, 3, [entry], "test", clock.now())
    if unapproved:
        gitlab.add_timelog(issue, people["engineer"], int(unapproved * 3600), CLOSED, None)


def close(sandbox, issue, moment: datetime) -> None:
    gitlab = sandbox.standin("gitlab").backend
    gitlab.clock = lambda: moment
    gitlab.update_issue(gitlab.project(PROJECT), issue.iid, issue_author(sandbox), {"state_event": "close"})
    gitlab.clock = clock.now


def reopen(sandbox, issue) -> None:
    gitlab = sandbox.standin("gitlab").backend
    gitlab.update_issue(gitlab.project(PROJECT), issue.iid, issue_author(sandbox), {"state_event": "reopen"})


def issue_author(sandbox):
    return next(user for user in sandbox.standin("gitlab").backend.users.values() if user.bot)


def files_on(sandbox, opportunity_id: str) -> list[dict]:
    salesforce = sandbox.standin("salesforce").backend
    documents = {
        link["ContentDocumentId"]
        for link in salesforce.records["ContentDocumentLink"].values()
        if link["LinkedEntityId"] == opportunity_id
    }
    return [v for v in salesforce.records["ContentVersion"].values() if v["ContentDocumentId"] in documents]


def posts_on(sandbox, opportunity_id: str) -> list[dict]:
    salesforce = sandbox.standin("salesforce").backend
    items = [item for item in salesforce.records["FeedItem"].values() if item["ParentId"] == opportunity_id]
    return [salesforce.feed_element(item["Id"], "59.0") for item in sorted(items, key=lambda item: item["Id"])]


def user_id(sandbox, username: str) -> str:
    users = sandbox.standin("salesforce").backend.records["User"].values()
    return next(user["Id"] for user in users if user["Username"] == username)


def read_export(sandbox, issue, closed: datetime, name: str) -> bytes:
    from ps_integrations.exports import ExportStore

    folder = f"engagement_closeout/closeout-test-{issue.iid}/{closed.strftime('%Y-%m-%dT%H-%M-%SZ')}"
    return ExportStore(os.environ["AIRFLOW_VAR_PS_EXPORTS_BASE"]).read_bytes(folder, name)


def test_one_close_files_one_report_and_one_post_with_both_mentions(dag, closeout):
    from airflow.utils.state import DagRunState

    issue, opportunity = engagement(closeout, amount=30000.0, budget=100.0)
    approve(closeout, issue, {"engineer": 60, "project_manager": 10.5, "technical_architect": 8}, "2026-W46", 4.25)
    close(closeout, issue, CLOSED)

    assert run(dag, **window(CLOSED)).state == DagRunState.SUCCESS
    [version] = files_on(closeout, opportunity["Id"])
    report = read_export(closeout, issue, CLOSED, "report.html")
    assert closeout.standin("salesforce").backend.version_data(version["Id"]) == report
    assert version["FirstPublishLocationId"] == opportunity["Id"] and version["PathOnClient"].endswith(".html")
    [post] = posts_on(closeout, opportunity["Id"])
    mentioned = [s["record"]["id"] for s in post["body"]["messageSegments"] if s["type"] == "Mention"]
    assert mentioned == [user_id(closeout, "controller@ps.example.com"), user_id(closeout, "fbp.sales@ps.example.com")]
    # cost 60 x 120 + 10.5 x 110 + 8 x 150 = 7,200 + 1,155 + 1,200 = 9,555; margin 20,445 / 30,000 = 68.15 %
    text = post["body"]["text"]
    assert "gross margin 68.2%, meets the 30.0% target; 78.5% complete (78.50 of 100.0 budgeted hours)" in text
    assert "Cost 9,555.00 USD against revenue 30,000.00 USD" in text
    assert "4.25 hours logged but not approved yet" in text
    assert closeout.standin("gitlab").backend.issue_url(issue) in text
    assert "@Carla Controller" in text and "@Felix Partner" in text

    rows = list(csv.DictReader(io.StringIO(read_export(closeout, issue, CLOSED, "analysis.csv").decode())))
    total = rows[-1]
    assert [row["row"] for row in rows] == ["line", "line", "line", "total"]
    assert (total["cost"], total["cost_rounded"], total["margin_pct"], total["margin_pct_rounded"]) == (
        "9555",
        "9555.00",
        "68.15",
        "68.2",
    )
    assert (total["percent_complete"], total["unapproved_hours"], total["currency"]) == ("78.5", "4.25", "USD")
    assert "None" not in read_export(closeout, issue, CLOSED, "analysis.csv").decode()
    assert "NaN" not in read_export(closeout, issue, CLOSED, "analysis.csv").decode()

    # a re-run and a backfill of the same window file nothing again
    assert run(dag, **window(CLOSED)).state == DagRunState.SUCCESS
    assert run(dag, engagement_iids=[issue.iid]).state == DagRunState.SUCCESS
    assert len(files_on(closeout, opportunity["Id"])) == 1 and len(posts_on(closeout, opportunity["Id"])) == 1
    assert last_run()["counts"]["unchanged"] == 1


@pytest.mark.parametrize(
    ("endpoint", "written", "status"),
    [("post_feed_element", posts_on, "posting"), ("create_sobject", files_on, "attaching")],
    ids=["between-post-and-record", "between-upload-and-record"],
)
def test_a_crash_between_a_salesforce_write_and_its_record_files_once(
    dag, closeout, tmp_path, endpoint, written, status
):
    """Salesforce takes the write but holds its answer; the task process is killed (SIGKILL) meanwhile."""
    from airflow.utils.state import DagRunState

    issue, opportunity = engagement(closeout)
    approve(closeout, issue, {"engineer": 40}, "2026-W46")
    close(closeout, issue, CLOSED)
    salesforce = closeout.standin("salesforce")
    salesforce.faults.script(endpoint, "slow_response", 1, delay_ms=30000)
    airflow = os.path.join(os.path.dirname(sys.executable), "airflow")
    log_file = (tmp_path / "crash.log").open("wb")
    conf = {**PARAMS, **window(CLOSED)}
    process = subprocess.Popen(
        [airflow, "dags", "test", "ps_engagement_closeout", clock.now().isoformat(), "--conf", json.dumps(conf)],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not written(closeout, opportunity["Id"]):
        assert process.poll() is None, (tmp_path / "crash.log").read_text()[-3000:]
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    log_file.close()
    salesforce.faults.reset()
    assert process.returncode == -signal.SIGKILL
    [row] = StateStore().fetch_all("engagement_closeout/unfinished")
    assert row["status"] == status

    assert run(dag, **window(CLOSED)).state == DagRunState.SUCCESS  # the next run completes the record
    assert len(posts_on(closeout, opportunity["Id"])) == 1 and len(files_on(closeout, opportunity["Id"])) == 1
    assert StateStore().fetch_all("engagement_closeout/unfinished") == []
    assert last_run()["counts"]["filed"] == 1


def test_a_reopened_and_closed_again_engagement_gets_a_new_version_and_a_short_follow_up(dag, closeout):
    from airflow.utils.state import DagRunState

    issue, opportunity = engagement(closeout, amount=20000.0, budget=100.0)
    approve(closeout, issue, {"engineer": 50}, "2026-W46")
    close(closeout, issue, CLOSED - timedelta(days=3))
    assert run(dag, **window(CLOSED - timedelta(days=3))).state == DagRunState.SUCCESS
    reopen(closeout, issue)
    approve(closeout, issue, {"engineer": 70}, "2026-W47")
    close(closeout, issue, CLOSED)

    assert run(dag, **window(CLOSED)).state == DagRunState.SUCCESS
    assert run(dag, **window(CLOSED)).state == DagRunState.SUCCESS
    versions = sorted(files_on(closeout, opportunity["Id"]), key=lambda v: v["VersionNumber"])
    assert [v["VersionNumber"] for v in versions] == ["1", "2"]
    assert len({v["ContentDocumentId"] for v in versions}) == 1 and versions[1]["IsLatest"]
    first, follow_up = posts_on(closeout, opportunity["Id"])
    # 50 h x 120 = 6,000 -> 70.0 %; then 120 h x 120 = 14,400 -> 28.0 %, below target, 120 % complete
    assert "gross margin 70.0%" in first["body"]["text"]
    assert follow_up["body"]["text"].startswith("Updated cost-vs-actual analysis for Closeout Corp: Custom SOW")
    assert "Gross margin now 28.0% (was 70.0%), 120.0% complete" in follow_up["body"]["text"]
    assert len(follow_up["body"]["text"]) < len(first["body"]["text"])
    assert sum(s["type"] == "Mention" for s in follow_up["body"]["messageSegments"]) == 2


def test_progress_labels_follow_approved_hours_across_milestones(dag, closeout):
    from airflow.utils.state import DagRunState

    sow, _ = engagement(closeout, "Custom SOW", budget=100.0)
    packaged, _ = engagement(closeout, "Implementation", budget=16.0)
    embedded, _ = engagement(closeout, "Embedded Engineer", budget=480.0)
    unbudgeted, _ = engagement(closeout, "Custom SOW", budget=None)  # named in the summary, not a run failure
    gitlab = closeout.standin("gitlab").backend
    gitlab.update_issue(gitlab.project(PROJECT), sow.iid, issue_author(closeout), {"add_labels": "priority::high"})
    # not an engagement (no engagement type label, no marker): ignored, not a finding
    followup = gitlab.create_issue(
        gitlab.project(PROJECT), issue_author(closeout), {"title": "CSAT follow-up", "labels": ["csat::follow-up"]}
    )

    def progress(issue) -> list[str]:
        return [label for label in issue.labels if label.startswith("progress::")]

    seen = []
    for week, hours in (("2026-W40", 20), ("2026-W41", 10), ("2026-W42", 25), ("2026-W43", 25), ("2026-W44", 20)):
        approve(closeout, sow, {"engineer": hours}, week)
        assert run(dag).state == DagRunState.SUCCESS
        seen.append(progress(sow))
    assert seen == [[], ["progress::25"], ["progress::50"], ["progress::75"], ["progress::100"]]
    assert "priority::high" in sow.labels and "ps::in-progress" in sow.labels  # other scopes untouched
    assert progress(packaged) == ["progress::incomplete"] and progress(embedded) == []
    assert followup.labels == ["csat::follow-up"]
    assert progress(unbudgeted) == [] and last_run()["counts"]["not labelled"] == 1
    assert any(gitlab.issue_url(unbudgeted) in note for note in last_run()["notes"])

    approve(closeout, packaged, {"engineer": 16}, "2026-W45")
    assert run(dag).state == DagRunState.SUCCESS
    assert progress(packaged) == ["progress::complete"]
    assert last_run()["counts"]["labels set"] == 1  # only the packaged one changed

    assert run(dag).state == DagRunState.SUCCESS
    assert last_run()["counts"]["labels set"] == 0  # set only when they change


def test_bad_input_is_named_and_the_other_engagements_are_still_filed(dag, closeout, monkeypatch, tmp_path):
    from airflow.utils.state import DagRunState

    from ps_integrations import rules

    rates = tmp_path / "cost_rates.yml"
    rates.write_text("cost_rates:\n  currency: USD\n  rates: {engineer: 120, project_manager: 110}\n")
    monkeypatch.setattr(rules, "COST_RATES_FILE", rates)
    good, good_opportunity = engagement(closeout)
    unlinked, _ = engagement(closeout, marker=False)
    no_budget, _ = engagement(closeout, amount=None, budget=None)
    no_rate, _ = engagement(closeout)
    for issue in (good, unlinked, no_budget, no_rate):
        approve(closeout, issue, {"engineer": 10}, "2026-W46")
    approve(closeout, no_rate, {"technical_architect": 5}, "2026-W47")
    for issue in (good, unlinked, no_budget, no_rate):
        close(closeout, issue, CLOSED)

    assert run(dag, **window(CLOSED)).state == DagRunState.FAILED
    assert len(posts_on(closeout, good_opportunity["Id"])) == 1
    failures = {(f["system"], f["record"].rsplit("/", 1)[-1], f["field"]) for f in last_run()["failures"]}
    assert failures == {
        ("GitLab", str(unlinked.iid), "description"),
        ("Salesforce", str(no_budget.iid), "Opportunity.Amount"),
        ("Salesforce", str(no_budget.iid), "Opportunity.Budgeted_Hours__c"),
        ("close-out rules", str(no_rate.iid), "cost_rates.rates.technical_architect"),
    }
    assert all(f["record"].startswith("engagement issue http") for f in last_run()["failures"])

    # fixed in Salesforce: the next run files it without waiting for a new close
    salesforce = closeout.standin("salesforce").backend
    opportunity_id = no_budget.description.split("opportunity-id=")[1].split(" ")[0]
    salesforce.update("Opportunity", opportunity_id, {"Amount": 5000.0, "Budgeted_Hours__c": 20.0})
    assert run(dag).state == DagRunState.FAILED  # the other two are still broken
    assert len(posts_on(closeout, opportunity_id)) == 1
    assert len(posts_on(closeout, good_opportunity["Id"])) == 1


def test_an_unknown_mention_user_stops_filing_but_not_the_labels(dag, closeout, monkeypatch):
    from airflow.utils.state import DagRunState

    monkeypatch.setenv(
        "AIRFLOW_VAR_PS_ENGAGEMENT_CLOSEOUT_CONFIG", json.dumps({**CONFIG, "controller": "nobody@ps.example.com"})
    )
    closed, opportunity = engagement(closeout)
    approve(closeout, closed, {"engineer": 10}, "2026-W46")
    close(closeout, closed, CLOSED)
    still_open, _ = engagement(closeout, budget=20.0)
    approve(closeout, still_open, {"engineer": 10}, "2026-W46")

    assert run(dag, **window(CLOSED)).state == DagRunState.FAILED
    [failure] = last_run()["failures"]
    assert failure["system"] == "Salesforce" and failure["field"] == "User nobody@ps.example.com (controller)"
    assert posts_on(closeout, opportunity["Id"]) == [] and files_on(closeout, opportunity["Id"]) == []
    assert "progress::50" in still_open.labels

    monkeypatch.setenv("AIRFLOW_VAR_PS_ENGAGEMENT_CLOSEOUT_CONFIG", json.dumps(CONFIG))
    assert run(dag).state == DagRunState.SUCCESS  # fixed: the pending close is filed by the next run
    assert len(posts_on(closeout, opportunity["Id"])) == 1


@pytest.mark.calendar
def test_after_a_real_rollup_closed_seeded_engagements_are_filed_from_its_exported_hours(dag, closeout, monkeypatch):
    """What `make demo` does: the roll-up exports approved hours, two seeded engagements close, the
    close-out files them (and the seeded ones closed earlier) from the roll-up's data."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils.state import DagRunState

    from tests.dags.test_integrity import DAGS_DIR

    monkeypatch.setenv(
        "AIRFLOW_VAR_PS_ENGAGEMENT_CLOSEOUT_CONFIG", json.dumps({**CONFIG, "engagements_project": SEEDED})
    )
    rollup = DagBag(dag_folder=str(DAGS_DIR)).get_dag("ps_timesheet_rollup")
    period = {"period": None, "period_start": "2026-08-31", "period_end": "2026-11-15"}
    assert rollup.test(run_conf=period).state == DagRunState.SUCCESS
    gitlab = closeout.standin("gitlab").backend
    for iid in (1, 5):
        gitlab.update_issue(gitlab.project(SEEDED), iid, issue_author(closeout), {"state_event": "close"})

    assert run(dag, since="2024-01-01T00:00:00Z").state == DagRunState.SUCCESS
    exported = {
        row["engagement"]: Decimal(str(row["hours"]))
        for row in StateStore().fetch_all("engagement_closeout/approved_totals")
    }
    salesforce = closeout.standin("salesforce").backend
    for iid in (1, 5):
        issue = gitlab.issue(gitlab.project(SEEDED), iid)
        url = gitlab.issue_url(issue)
        opportunity_id = issue.description.split("opportunity-id=")[1].split(" ")[0]
        [post] = [item for item in salesforce.records["FeedItem"].values() if item["ParentId"] == opportunity_id]
        approved = Decimal(re.search(r"complete \(([0-9.]+) of ", post["Body"]).group(1))
        assert exported[url] > 0 and approved == exported[url]
    counts = last_run()["counts"]
    assert counts["filed"] >= 2 and counts["labels set"] >= 1
