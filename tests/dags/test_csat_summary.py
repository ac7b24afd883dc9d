"""The CSAT summary through real DAG runs on surveys and answers in the state database."""

from __future__ import annotations

import csv
import io
import json
import struct

import pytest

from ps_integrations.exports import ExportStore
from ps_integrations.state_store import StateStore

pytestmark = pytest.mark.airflow

# (closed_at, engagement type, project manager, account, score or None, comment)
SURVEYS = [
    ("2026-08-03T10:00:00+00:00", "Migration", "amara.ps1", "Acme", 5, "Smooth <b>cut-over</b>"),
    ("2026-08-20T10:00:00+00:00", "Migration", "amara.ps1", "Acme", 4, ""),
    ("2026-09-14T10:00:00+00:00", "Training", "bjorn.ps2", "Globex", 2, "Trainer was late"),
    ("2026-10-01T10:00:00+00:00", "Training", "bjorn.ps2", "Initech", None, ""),
    ("2026-06-10T10:00:00+00:00", "Migration", "amara.ps1", "Acme", 3, "ok"),  # the quarter before
]


@pytest.fixture(scope="module")
def dag():
    from airflow.dag_processing.dagbag import DagBag

    from tests.dags.test_integrity import DAGS_DIR

    return DagBag(dag_folder=str(DAGS_DIR)).get_dag("ps_csat_summary")


@pytest.fixture
def answered(product_env):
    store = StateStore()
    store.apply_schema()
    for number, (closed_at, kind, pm, account, score, comment) in enumerate(SURVEYS):
        survey_id = f"{number:032x}"
        store.execute(
            "csat/add_survey",
            {
                "survey_id": survey_id,
                "engagement_url": f"https://gitlab.example/ps/engagements/-/issues/{number}",
                "engagement_title": f"{account}: {kind}",
                "issue_iid": number,
                "opportunity_id": "0065g0000000007AAA",
                "account": account,
                "engagement_type": kind,
                "sku_category": "Education" if kind == "Training" else "Migration",
                "project_manager": pm,
                "closed_at": closed_at,
                "contact_id": f"003{number:015d}",
                "contact_name": "Pat",
                "email": f"pat{number}@customer.example.com",
                "window_at": closed_at,
                "run_id": "seed",
                "engagement_name": f"{account} - {kind}",
                "company": "GitLab",
                "reply_to": "",
            },
        )
        store.execute("csat/claim", {"survey_id": survey_id})
        store.execute("csat/mark_sent", {"survey_id": survey_id, "sent_at": closed_at})
        if score is not None:
            store.execute(
                "csat/service_first_answer",
                {
                    "survey_id": survey_id,
                    "score": score,
                    "comment": comment,
                    "now": closed_at.replace("10:00", "12:00"),
                },
            )
    return product_env


def table(name):
    text = ExportStore.from_variables().read_bytes("csat/FY2027-Q3", name).decode("utf-8")
    return list(csv.DictReader(io.StringIO(text)))


@pytest.mark.calendar
def test_the_quarter_is_summarised_exported_and_mailed(dag, answered):
    from airflow.utils.state import DagRunState

    assert dag.test(run_conf={"period": "FY2027-Q3"}).state == DagRunState.SUCCESS  # Aug-Oct 2026
    exports = ExportStore.from_variables()
    assert exports.list_folder("csat/FY2027-Q3") == [
        "README.md",
        "csat_by_dimension.csv",
        "manifest.json",
        "responses.csv",
        "summary.html",
        "trend.png",
    ]
    rows = {(row["dimension"], row["value"]): row for row in table("csat_by_dimension.csv")}
    # 4 surveys, 3 answers, 2 of them 4 or 5: CSAT 66.7%, response rate 75%
    quarter = rows[("fiscal_quarter", "FY2027-Q3")]
    assert (quarter["surveys"], quarter["responses"], quarter["csat_pct"], quarter["response_rate_pct"]) == (
        "4",
        "3",
        "66.7",
        "75.0",
    )
    assert quarter["few_responses"] == "true" and quarter["score_2"] == "1"
    assert rows[("fiscal_quarter", "FY2027-Q2")]["csat_pct"] == "0.0"  # the single 3
    assert rows[("fiscal_quarter", "FY2026-Q4")]["responses"] == "0"  # shown, not hidden
    assert sum(1 for key in rows if key[0] == "fiscal_quarter") == 8
    assert rows[("engagement_type", "Training")]["csat_pct"] == "0.0"
    assert rows[("project_manager", "amara.ps1")]["csat_pct"] == "100.0"
    assert rows[("account", "Initech")]["responses"] == "0" and rows[("account", "Initech")]["csat_pct"] == ""

    responses = table("responses.csv")
    assert len(responses) == 4 and "@" not in json.dumps(responses)
    html = exports.read_bytes("csat/FY2027-Q3", "summary.html").decode("utf-8")
    assert "Smooth &lt;b&gt;cut-over&lt;/b&gt;" in html and "<b>cut-over</b>" not in html
    assert html.index("Trainer was late") < html.index("Smooth")  # newest first
    assert "66.7% (n=3) (few responses)" in html and "data:image/png;base64," in html

    png = exports.read_bytes("csat/FY2027-Q3", "trend.png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (800, 360) and 5_000 < len(png) < 200_000

    [mail] = answered.smtp.store.all()
    assert mail["rcpt_tos"] == ["ps-leadership@example.com"] and "FY2027-Q3" in mail["subject"]
    assert "cid:" in mail["html"]
    names = {attachment["filename"] for attachment in mail["attachments"]}
    assert {"trend.png", "csat_by_dimension.csv"} <= names

    summary = StateStore().fetch_all("platform/runs_of_dag", {"dag_id": "ps_csat_summary"})[0]["summary"]
    # 8 quarters: the 4 answers of Q3 and Q2 (5, 4, 2 and 3), 2 of them 4 or 5
    assert "last 8 quarters: CSAT 50.0% (n=4) (few responses)" in summary

    dag.test(run_conf={"period": "FY2027-Q3"})  # nothing changed: no second mail
    assert len(answered.smtp.store.all()) == 1


def test_a_quarter_without_surveys(dag, answered):
    from airflow.utils.state import DagRunState

    assert dag.test(run_conf={"period": "FY2025-Q1"}).state == DagRunState.SUCCESS
    text = ExportStore.from_variables().read_bytes("csat/FY2025-Q1", "summary.html").decode("utf-8")
    assert "- (n=0)" in text and "No comments this quarter" in text


@pytest.fixture
def api_server(airflow_db, monkeypatch):
    """Airflow's own API server app (simple auth manager), with this project's plugins mounted."""
    from fastapi.testclient import TestClient

    monkeypatch.setenv(
        "AIRFLOW__CORE__AUTH_MANAGER", "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
    )
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "leader:viewer")
    from airflow import plugins_manager
    from airflow.api_fastapi.app import create_app, get_auth_manager, purge_cached_app
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    purge_cached_app()
    assert "ps_csat_ui" in {plugin.name for plugin in plugins_manager._get_plugins()[0]}
    app = create_app("core")
    token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="leader", role="viewer"))
    return TestClient(app), token


def test_the_ps_csat_page_needs_an_airflow_login(dag, answered, api_server):
    client, token = api_server
    dag.test(run_conf={"period": "FY2027-Q3"})

    assert client.get("/ps-csat/").status_code in (401, 403)
    assert client.get("/ps-csat/trend.png").status_code in (401, 403)
    assert client.get("/ps-csat/", cookies={"_token": "forged"}).status_code in (401, 403)

    page = client.get("/ps-csat/", headers={"Authorization": f"Bearer {token}"})
    assert page.status_code == 200 and "PS customer satisfaction, FY2027-Q3" in page.text
    client.cookies.set("_token", token)
    chart = client.get("/ps-csat/trend.png")
    assert chart.status_code == 200 and chart.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_plugin_adds_the_page_to_the_navigation():
    from airflow import plugins_manager

    plugins, errors = plugins_manager._get_plugins()
    assert not errors
    views = [view for plugin in plugins if plugin.name == "ps_csat_ui" for view in plugin.external_views]
    assert views == [
        {"name": "PS CSAT", "href": "/ps-csat/", "destination": "nav", "category": "browse", "url_route": "ps-csat"}
    ]


def test_the_report_renders_in_a_real_browser(dag, answered, browser, tmp_path):
    from selenium.webdriver.common.by import By

    dag.test(run_conf={"period": "FY2027-Q3"})
    report = tmp_path / "summary.html"
    report.write_bytes(ExportStore.from_variables().read_bytes("csat/FY2027-Q3", "summary.html"))

    browser.get(report.as_uri())
    assert browser.find_element(By.TAG_NAME, "h2").text == "PS customer satisfaction, FY2027-Q3"
    chart = browser.find_element(By.TAG_NAME, "img")
    assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", chart) == 800
    assert "Trainer was late" in browser.find_element(By.TAG_NAME, "body").text
    browser.save_screenshot(str(tmp_path / "summary.png"))
    assert (tmp_path / "summary.png").stat().st_size > 10_000


class Killed(BaseException):
    """A kill of the task (as a timeout or SIGTERM raises: not an Exception) right after the server's 250."""


def test_a_kill_after_the_server_accepted_the_leadership_mail_never_mails_twice(dag, answered, monkeypatch):
    """The first try is killed right after the SMTP server's 250; Airflow's own retry must not mail again."""
    from airflow.utils.state import DagRunState

    from ps_integrations import mail

    real_send = mail.send_message
    tries = []

    def accepted_then_killed(message):
        real_send(message)  # the sandbox SMTP server answered 250: the mail is delivered
        tries.append(message["Subject"])
        if len(tries) == 1:
            raise Killed

    monkeypatch.setattr(mail, "send_message", accepted_then_killed)
    run = dag.test(run_conf={"period": "FY2027-Q3"})

    assert run.state == DagRunState.SUCCESS  # interrupted is not a failure: a person checks the mailbox
    leadership = [m for m in answered.smtp.store.all() if m["rcpt_tos"] == ["ps-leadership@example.com"]]
    assert len(tries) == 1 and len(leadership) == 1
    summary = StateStore().fetch_all("platform/runs_of_dag", {"dag_id": "ps_csat_summary"})[0]["summary"]
    assert "mails sent 0" in summary and "leadership mail FY2027-Q3 interrupted" in summary

    dag.test(run_conf={"period": "FY2027-Q3"})  # a later run of the same content: still no second mail
    assert len(tries) == 1 and len(answered.smtp.store.all()) == 1
