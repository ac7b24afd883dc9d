"""CSAT surveys through real DAG runs: GitLab, Salesforce and SMTP stand-ins, the response service
running in this process on the same state database."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta

import pytest
import requests
from sqlalchemy import create_engine

from ps_integrations import clock
from ps_integrations.state_store import StateStore

pytestmark = pytest.mark.airflow

SECRET = "csat-test-signing-secret"
PARAMS = {"dry_run": False, "release_surveys": [], "since": None, "until": None}
ROLES = ("Decision Maker", "Economic Buyer", "Executive Sponsor")


@pytest.fixture(scope="module")
def dag():
    from airflow.dag_processing.dagbag import DagBag

    from tests.dags.test_integrity import DAGS_DIR

    return DagBag(dag_folder=str(DAGS_DIR)).get_dag("ps_csat_surveys")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def csat(product_env, state_db_uri, monkeypatch):
    """The product's connections plus the response service (uvicorn, own thread) and ps_csat."""
    import uvicorn

    from ps_integrations.csat_service.app import ServiceSettings, create_app

    store = StateStore(engine=create_engine(state_db_uri))
    store.apply_schema()
    app = create_app(store, ServiceSettings(SECRET, secure_cookies=False))  # the production limits
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(100):
        if server.started:
            break
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("AIRFLOW_CONN_PS_CSAT", json.dumps({"conn_type": "http", "host": base, "password": SECRET}))
    monkeypatch.setenv("AIRFLOW_VAR_PS_CSAT_SURVEYS_CONFIG", json.dumps({"allow_list": ["example.com"]}))
    product_env.csat_url = base
    yield product_env
    server.should_exit = True
    thread.join(timeout=10)


def run(dag, **params):
    return dag.test(run_conf={**PARAMS, **params})


def last_summary() -> str:
    return StateStore().fetch_all("platform/runs_of_dag", {"dag_id": "ps_csat_surveys"})[0]["summary"]


def surveys() -> list[dict]:
    with StateStore().engine.connect() as connection:
        from sqlalchemy import text

        return [dict(row._mapping) for row in connection.execute(text("SELECT * FROM csat_surveys ORDER BY survey_id"))]


def closed_engagements(sandbox):
    """Seeded engagement issues that are closed and linked to an opportunity, oldest close first."""
    backend = sandbox.standin("gitlab").backend
    project = backend.project("professional-services/engagements")
    found = [
        issue
        for issue in backend.issues.values()
        if issue.project_id == project.id and issue.state == "closed" and "opportunity-id=" in (issue.description or "")
    ]
    return sorted(found, key=lambda issue: issue.closed_at)


def window_around(moment: datetime) -> dict:
    return {
        "since": (moment - timedelta(minutes=30)).isoformat(),
        "until": (moment + timedelta(minutes=30)).isoformat(),
    }


def expected_recipients(sandbox, issue) -> set[str]:
    salesforce = sandbox.standin("salesforce").backend
    opportunity_id = re.search(r"opportunity-id=(\w+)", issue.description).group(1)
    emails = set()
    for role in salesforce.records["OpportunityContactRole"].values():
        if role["OpportunityId"][:15] != opportunity_id[:15] or role.get("IsDeleted"):
            continue
        contact = salesforce.records["Contact"][role["ContactId"]]
        if (role["IsPrimary"] or role["Role"] in ROLES) and not contact.get("HasOptedOutOfEmail"):
            emails.add(contact["Email"].lower())
    return emails


def add_contact(sandbox, issue, email: str, role: str = "Decision Maker") -> str:
    """One more contact role on the engagement's opportunity (the seeded deals have one or two)."""
    salesforce = sandbox.standin("salesforce").backend
    opportunity_id = re.search(r"opportunity-id=(\w+)", issue.description).group(1)
    contact = salesforce.insert(
        "Contact", {"FirstName": "Pat", "LastName": email.split("@")[0], "Email": email, "HasOptedOutOfEmail": False}
    )
    salesforce.insert(
        "OpportunityContactRole",
        {"OpportunityId": opportunity_id, "ContactId": contact["Id"], "Role": role, "IsPrimary": False},
    )
    return str(contact["Id"])


def survey_mails(sandbox) -> list[dict]:
    return [mail for mail in sandbox.smtp.store.all() if mail["subject"].startswith("How did we do")]


def links(mail) -> list[str]:
    return re.findall(r'href="([^"]+)"', mail["html"])


def submit(session: requests.Session, base: str, link: str, score: str, comment: str = "") -> requests.Response:
    """Open a rating link and send its form (every hidden field), as the customer's browser does."""
    form = session.get(link, timeout=10)
    fields = dict(re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)"', form.text))
    action = re.search(r'action="([^"]+)"', form.text).group(1)
    return session.post(base + action, data={"score": score, "comment": comment, **fields}, timeout=10)


@pytest.mark.calendar
def test_a_closed_engagement_surveys_its_contacts_once(dag, csat):
    from airflow.utils.state import DagRunState

    issue = closed_engagements(csat)[0]
    expected = expected_recipients(csat, issue)
    assert expected, "the seeded opportunity has contacts to survey"

    assert run(dag, **window_around(issue.closed_at)).state == DagRunState.SUCCESS
    mails = csat.smtp.store.all()
    assert {mail["rcpt_tos"][0] for mail in mails} == expected and len(mails) == len(expected)
    mail = mails[0]
    assert mail["text"] and mail["html"]
    rating = [url for url in links(mail) if "/r/" in url]
    assert [url.rsplit("=", 1)[1] for url in rating] == ["1", "2", "3", "4", "5"]
    assert all(url.startswith(csat.csat_url) for url in links(mail))
    assert mail["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mail["headers"]["List-Unsubscribe"].startswith(f"<{csat.csat_url}/u/")
    assert "GitLab Inc." in mail["text"]  # the legal footer
    assert {row["status"] for row in surveys()} == {"sent"}

    run(dag, **window_around(issue.closed_at))  # a re-run of the same window
    gitlab = csat.standin("gitlab").backend
    issue.state, issue.closed_at = "opened", None  # reopened ...
    issue.state, issue.closed_at = "closed", clock.now()  # ... and closed again
    issue.updated_at = issue.closed_at
    run(dag, **window_around(issue.closed_at))
    surveys_sent = [mail for mail in csat.smtp.store.all() if not mail["subject"].startswith("Reminder: ")]
    assert len(surveys_sent) == len(expected)
    assert gitlab is not None


def test_fetching_every_link_in_the_mail_records_nothing(dag, csat):
    issue = closed_engagements(csat)[0]
    run(dag, **window_around(issue.closed_at))
    for mail in csat.smtp.store.all():
        for url in [*links(mail), *re.findall(r"https?://\S+", mail["text"])]:
            assert requests.get(url, timeout=10).status_code == 200
            requests.head(url, timeout=10)
    with StateStore().engine.connect() as connection:
        from sqlalchemy import text

        assert connection.execute(text("SELECT count(*) FROM csat_responses")).scalar() == 0
        assert connection.execute(text("SELECT count(*) FROM csat_optouts")).scalar() == 0


def test_the_throttle_window_spans_engagements(dag, csat):
    first, second = closed_engagements(csat)[:2]
    run(dag, **window_around(first.closed_at))
    surveyed = next(iter(expected_recipients(csat, first)))
    salesforce = csat.standin("salesforce").backend
    contact_id = next(cid for cid, c in salesforce.records["Contact"].items() if c["Email"].lower() == surveyed)
    second_opportunity = re.search(r"opportunity-id=(\w+)", second.description).group(1)
    salesforce.insert(
        "OpportunityContactRole",
        {"OpportunityId": second_opportunity, "ContactId": contact_id, "Role": "Decision Maker", "IsPrimary": False},
    )
    second.closed_at = first.closed_at + timedelta(days=30)
    second.updated_at = second.closed_at
    csat.smtp.store.clear()

    run(dag, **window_around(second.closed_at))
    surveyed_now = {mail["rcpt_tos"][0] for mail in csat.smtp.store.all() if not mail["subject"].startswith("Reminder")}
    assert surveyed_now and surveyed not in surveyed_now
    assert "skipped 1, skipped (throttled) 1, skipped (opted out) 0" in last_summary()  # the run says why

    second.closed_at = first.closed_at + timedelta(days=120)  # outside 90 days: a new engagement may ask
    assert second.closed_at - first.closed_at > timedelta(days=90)


@pytest.mark.calendar
def test_one_reminder_and_none_after_an_answer_or_an_opt_out(dag, csat):
    from fastapi.testclient import TestClient  # noqa: F401 - the service runs for real below

    issue = closed_engagements(csat)[0]
    for name in ("ana", "ben", "cy"):
        add_contact(csat, issue, f"{name}@acme.example.com")
    run(dag, **window_around(issue.closed_at))
    sent = csat.smtp.store.all()
    assert len(sent) >= 3
    answered, unsubscribed = sent[0], sent[1]
    session = requests.Session()
    assert submit(session, csat.csat_url, next(u for u in links(answered) if u.endswith("score=5")), "5").ok
    unsubscribe = next(u for u in links(unsubscribed) if "/u/" in u)
    assert requests.post(unsubscribe, data={"List-Unsubscribe": "One-Click"}, timeout=10).ok
    csat.smtp.store.clear()

    later = issue.closed_at + timedelta(days=6)
    run(dag, **window_around(later))
    reminded = {mail["rcpt_tos"][0] for mail in csat.smtp.store.all()}
    assert reminded == {mail["rcpt_tos"][0] for mail in sent} - {answered["rcpt_tos"][0], unsubscribed["rcpt_tos"][0]}
    assert all(mail["subject"].startswith("Reminder: ") for mail in csat.smtp.store.all())
    run(dag, **window_around(later + timedelta(days=3)))
    assert len(csat.smtp.store.all()) == len(reminded)


def logged(capfd, caplog) -> str:
    output = capfd.readouterr()
    return output.out + output.err + caplog.text


def test_dry_run_and_the_allow_list_mail_nobody(dag, csat, monkeypatch, capfd, caplog):
    caplog.set_level(logging.INFO)
    issue = closed_engagements(csat)[0]
    run(dag, dry_run=True, **window_around(issue.closed_at))
    assert csat.smtp.store.all() == [] and surveys() == []
    assert "Dry run: would survey" in logged(capfd, caplog)

    monkeypatch.setenv("AIRFLOW_VAR_PS_CSAT_SURVEYS_CONFIG", json.dumps({"allow_list": ["qa.example.org"]}))
    run(dag, **window_around(issue.closed_at))
    assert csat.smtp.store.all() == [] and surveys() == []
    skipped = len(expected_recipients(csat, issue))
    assert f"skipped {skipped}, skipped (throttled) 0, skipped (opted out) 0, skipped (no contact) 0" in last_summary()
    assert f"skipped (allow-list) {skipped}" in last_summary()
    assert "only the allow-list is mailed" in last_summary()


def test_customer_addresses_never_reach_the_task_logs(dag, csat, capfd, caplog):
    caplog.set_level(logging.DEBUG)
    issue = closed_engagements(csat)[0]
    add_contact(csat, issue, "opted.out@acme.example.com", role="Evaluator")
    run(dag, **window_around(issue.closed_at))
    recipients = {mail["rcpt_tos"][0] for mail in csat.smtp.store.all()}
    text = logged(capfd, caplog)
    assert recipients and "***@" in text
    assert not [address for address in recipients if address in text]
    assert "umbrella" not in text.lower()


def test_a_sigkill_between_send_and_record_is_not_resent_until_released(dag, csat, tmp_path):
    """The SMTP server keeps the mail, then the task process is killed before it hears the 250."""
    from airflow.utils.state import DagRunState

    issue = closed_engagements(csat)[0]
    csat.smtp.set_reply_delay(30)
    airflow = os.path.join(os.path.dirname(sys.executable), "airflow")
    log_file = (tmp_path / "crash.log").open("wb")
    conf = {**PARAMS, **window_around(issue.closed_at)}
    process = subprocess.Popen(
        [airflow, "dags", "test", "ps_csat_surveys", clock.now().isoformat(), "--conf", json.dumps(conf)],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not csat.smtp.store.all():
        assert process.poll() is None, (tmp_path / "crash.log").read_text()[-3000:]
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    log_file.close()
    csat.smtp.set_reply_delay(0)
    assert process.returncode == -signal.SIGKILL
    assert len(csat.smtp.store.all()) == 1
    [stuck] = [row["survey_id"] for row in surveys() if row["status"] == "sending"]

    assert run(dag, **window_around(issue.closed_at)).state == DagRunState.FAILED  # the retry
    [failure] = json.loads(
        StateStore().fetch_all("platform/runs_of_dag", {"dag_id": "ps_csat_surveys"})[0]["counts_json"]
    )["failures"]
    assert failure["record"] == f"survey {stuck}" and "release_surveys" in failure["reason"]
    assert len(survey_mails(csat)) == 1  # not sent again by the retry
    assert any("failed" in mail["subject"] for mail in csat.smtp.store.all())  # on-call was told

    assert run(dag, release_surveys=[stuck], **window_around(issue.closed_at)).state == DagRunState.SUCCESS
    assert {row["status"] for row in surveys()} == {"sent"}
    assert len(survey_mails(csat)) == 2  # the operator chose to send it once more


def test_a_low_score_raises_one_follow_up_issue_for_the_project_manager(dag, csat):
    issue = closed_engagements(csat)[0]
    run(dag, **window_around(issue.closed_at))
    mail = csat.smtp.store.all()[0]
    session = requests.Session()
    link = next(u for u in links(mail) if u.endswith("score=1"))
    hostile = "Terrible. /close @all #1 ![x](http://evil.example/x.png)"
    assert submit(session, csat.csat_url, link, "1", hostile).ok
    run(dag, **window_around(issue.closed_at))

    assert submit(session, csat.csat_url, link.split("?")[0], "2", "still bad").ok
    run(dag, **window_around(issue.closed_at))

    gitlab = csat.standin("gitlab").backend
    followups = [i for i in gitlab.issues.values() if "csat::follow-up" in i.labels]
    assert len(followups) == 1
    [followup] = followups
    assert followup.assignee_ids == issue.assignee_ids and followup.state == "opened"
    assert "\u200b" not in followup.title and followup.title.startswith("CSAT follow-up: ")
    assert (
        "\\/close" in followup.description and "\\@all" in followup.description and "![x]" not in followup.description
    )
    assert issue.web_url if hasattr(issue, "web_url") else True


def test_a_customer_answers_in_a_real_browser(dag, csat, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    issue = closed_engagements(csat)[0]
    run(dag, **window_around(issue.closed_at))
    [mail] = csat.smtp.store.all()
    four = next(url for url in links(mail) if url.endswith("score=4"))

    browser.get(four)
    assert browser.find_element(By.CSS_SELECTOR, "input[name=score][value='4']").is_selected()
    browser.find_element(By.ID, "comment").send_keys("Great migration, <b>thanks</b>!")
    browser.find_element(By.ID, "submit").click()
    thanks = WebDriverWait(browser, 20).until(expected_conditions.presence_of_element_located((By.ID, "thanks")))
    assert "rating of 4" in thanks.text
    assert "<b>thanks</b>" in browser.find_element(By.TAG_NAME, "blockquote").text  # shown as text, not markup
    browser.save_screenshot(str(tmp_path / "thanks.png"))
    assert (tmp_path / "thanks.png").stat().st_size > 1000

    with StateStore().engine.connect() as connection:
        from sqlalchemy import text

        [(score, comment)] = connection.execute(text("SELECT score, comment FROM csat_responses")).all()
    assert (score, comment) == (4, "Great migration, <b>thanks</b>!")


def test_a_scanner_fetching_every_link_then_the_customer_answering_at_once(dag, csat):
    """The scanner fetches (GET and HEAD) every link of the mail four times from the same address as
    the customer, who then opens the mail and answers straight away: the answer is recorded."""
    issue = closed_engagements(csat)[0]
    run(dag, **window_around(issue.closed_at))
    mail = csat.smtp.store.all()[0]
    urls = [*links(mail), *re.findall(r"https?://\S+", mail["text"])]
    assert len(urls) == 12
    scanner = requests.Session()
    for _ in range(4):
        for url in urls:
            assert scanner.get(url, timeout=10).status_code == 200
            scanner.head(url, timeout=10)

    customer = requests.Session()
    thanks = submit(customer, csat.csat_url, next(u for u in links(mail) if u.endswith("score=4")), "4", "Solid work")
    assert thanks.status_code == 200 and "rating of <b>4</b>" in thanks.text
    with StateStore().engine.connect() as connection:
        from sqlalchemy import text

        assert connection.execute(text("SELECT score, comment FROM csat_responses")).all() == [(4, "Solid work")]
        assert connection.execute(text("SELECT count(*) FROM csat_optouts")).scalar() == 0


def test_the_mail_names_the_engagement_and_the_team_and_reaches_a_person(dag, csat, monkeypatch):
    from email import message_from_string  # noqa: F401 - headers are read from the SMTP sink's copy

    issue = closed_engagements(csat)[0]
    gitlab = csat.standin("gitlab").backend
    manager = gitlab.users[issue.assignee_ids[0]]
    manager.public_email = "pm.of.record@example.com"
    salesforce = csat.standin("salesforce").backend
    opportunity_id = re.search(r"opportunity-id=(\w+)", issue.description).group(1)
    opportunity = next(r for oid, r in salesforce.records["Opportunity"].items() if oid[:15] == opportunity_id[:15])
    opportunity["Description"] = "Platform Modernisation 2026"
    monkeypatch.setenv(
        "AIRFLOW_VAR_PS_CSAT_SURVEYS_CONFIG",
        json.dumps({"allow_list": ["example.com"], "engagement_name_field": "Description", "company_name": "GitLab"}),
    )
    run(dag, **window_around(issue.closed_at))
    mail = csat.smtp.store.all()[0]
    headers = mail["headers"]
    assert headers["Message-ID"].endswith("@example.com>") and "localhost" not in headers["Message-ID"]
    assert headers["Reply-To"] == f"{manager.name} <pm.of.record@example.com>"
    assert mail["subject"] == "How did we do on Platform Modernisation 2026?"
    assert issue.title not in mail["subject"] and issue.title not in mail["text"]
    assert "One click" not in mail["html"] and "Send my rating" in mail["html"] and "Send my rating" in mail["text"]
    landing = requests.get(links(mail)[0], timeout=10).text
    assert "GitLab Professional Services" in landing and "Platform Modernisation 2026" in landing


def test_without_a_configured_name_or_a_pm_address_the_mail_falls_back(dag, csat):
    issue = closed_engagements(csat)[0]
    run(dag, **window_around(issue.closed_at))
    [row] = surveys()[:1]
    mail = csat.smtp.store.all()[0]
    assert row["engagement_name"].startswith(f"{row['account']} - ") and row["engagement_name"] in mail["subject"]
    assert mail["headers"]["Reply-To"] == "professional-services@example.com"  # the PS mailbox


def test_token_days_is_the_one_link_lifetime_and_unsubscribe_links_keep_working(dag, csat, monkeypatch):
    issue = closed_engagements(csat)[0]
    config = {"allow_list": ["example.com"], "token_days": 3}
    monkeypatch.setenv("AIRFLOW_VAR_PS_CSAT_SURVEYS_CONFIG", json.dumps(config))
    run(dag, **window_around(issue.closed_at))
    mail = csat.smtp.store.all()[0]
    rating, unsubscribe = links(mail)[0], next(u for u in links(mail) if "/u/" in u)
    assert "work until" in mail["text"]
    assert requests.get(rating, timeout=10).status_code == 200

    start = clock.now()
    monkeypatch.setenv(clock.PIN_VARIABLE, clock.pin_value(start + timedelta(days=2, hours=23)))
    assert requests.get(rating, timeout=10).status_code == 200
    monkeypatch.setenv(clock.PIN_VARIABLE, clock.pin_value(start + timedelta(days=3, minutes=1)))
    expired = requests.get(rating, timeout=10)
    assert expired.status_code == 404 and "expired" in expired.text

    monkeypatch.setenv(clock.PIN_VARIABLE, clock.pin_value(start + timedelta(days=400)))  # a mail from last year
    assert requests.get(unsubscribe, timeout=10).status_code == 200
    assert requests.post(unsubscribe, data={"List-Unsubscribe": "One-Click"}, timeout=10).status_code == 200
    with StateStore().engine.connect() as connection:
        from sqlalchemy import text

        assert connection.execute(text("SELECT email FROM csat_optouts")).scalars().all() == [mail["rcpt_tos"][0]]
