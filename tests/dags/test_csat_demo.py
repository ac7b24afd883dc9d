"""The demo's CSAT story through real DAG runs: two years of history, the current surveys mailed by
ps_csat_surveys and answered through the real response service (after a mail scanner prefetched every
link), follow-up issues, and the summary leadership reads - in a real browser."""

from __future__ import annotations

import contextlib
import re

import pytest

from ps_integrations import clock
from ps_integrations.exports import ExportStore
from ps_integrations.state_store import StateStore
from tests.dags.test_csat_summary import api_server  # noqa: F401 - Airflow's API server app with the plugin
from tests.dags.test_csat_surveys import csat, free_port  # noqa: F401 - the response-service fixture

pytestmark = pytest.mark.airflow


@pytest.fixture(scope="module")
def dags():
    from airflow.dag_processing.dagbag import DagBag

    from tests.dags.test_integrity import DAGS_DIR

    bag = DagBag(dag_folder=str(DAGS_DIR))
    return bag.get_dag("ps_csat_surveys"), bag.get_dag("ps_csat_summary")


def summary_of(dag_id: str) -> str:
    return StateStore().fetch_all("platform/runs_of_dag", {"dag_id": dag_id})[0]["summary"]


@pytest.mark.calendar
def test_the_demo_history_gives_leadership_a_report_worth_forwarding(dags, csat, api_server, browser, tmp_path):  # noqa: F811
    from airflow.utils.state import DagRunState
    from selenium.webdriver.common.by import By

    from sandbox.seeds import csat as history_model
    from sandbox.seeds import load_seed_file

    surveys_dag, summary_dag = dags
    end = clock.now()
    csat.load_seed({**load_seed_file(), "csat": {"end": end.isoformat()}})
    gitlab_url = csat.standin("gitlab").base_url
    past = history_model.history(end)
    history_model.write_history(StateStore(), past, gitlab_url)
    assert len(past) > 1000 and 0.3 < sum(1 for s in past if s.answer) / len(past) < 0.5

    conf = {"dry_run": False, "release_surveys": [], "since": "2024-01-01T00:00:00Z", "until": None}
    assert surveys_dag.test(run_conf=conf).state == DagRunState.SUCCESS
    mails = [mail for mail in csat.smtp.store.all() if mail["subject"].startswith("How did we do")]
    assert len(mails) > 25  # the last two weeks' closes, minus contacts surveyed in the last 90 days
    assert not [mail for mail in csat.smtp.store.all() if mail["subject"].startswith("Reminder")]
    first_run = summary_of("ps_csat_surveys")
    assert re.search(r"follow-up issues (\d+)", first_run) and "skipped (throttled)" in first_run

    scores = history_model.answer_mails(mails, end)
    assert len(scores) > 8 and set(scores) <= {1, 2, 3, 4, 5}
    assert surveys_dag.test(run_conf=conf).state == DagRunState.SUCCESS  # follow-ups for today's low scores
    assert summary_dag.test(run_conf={"period": None}).state == DagRunState.SUCCESS

    line = summary_of("ps_csat_summary")
    found = re.search(r"(FY\d{4}-Q\d): CSAT (\d+\.\d)% \(n=(\d+)\)", line)
    assert found, line
    period, csat_pct, answers = found.group(1), float(found.group(2)), int(found.group(3))
    assert answers > 20 and 70 < csat_pct < 100, line

    rows = {row["value"]: row for row in _csv(period, "csat_by_dimension.csv") if row["dimension"] == "fiscal_quarter"}
    assert len(rows) == 8 and all(int(row["responses"]) >= 20 for key, row in rows.items() if key != period)
    managers = {row["value"] for row in _csv(period, "csat_by_dimension.csv") if row["dimension"] == "project_manager"}
    kinds = {row["value"] for row in _csv(period, "csat_by_dimension.csv") if row["dimension"] == "engagement_type"}
    assert len(managers) >= 3 and len(kinds) >= 4

    gitlab = csat.standin("gitlab").backend
    followups = [issue for issue in gitlab.issues.values() if "csat::follow-up" in issue.labels]
    low_now = [row for row in _csv(period, "responses.csv") if row["score"] in ("1", "2")]
    assert all(row["follow_up_issue"].startswith(gitlab_url) for row in low_now)
    assert len(followups) >= len(low_now) and all("\u200b" not in issue.title for issue in followups)

    report = tmp_path / "summary.html"
    report.write_bytes(ExportStore.from_variables().read_bytes(f"csat/{period}", "summary.html"))
    browser.get(report.as_uri())
    headline = browser.find_element(By.ID, "headline").text
    assert f"CSAT {csat_pct}% (n={answers})" in headline
    assert " points on " in headline or "level with" in headline
    text = browser.find_element(By.TAG_NAME, "body").text
    for section in ("Fiscal quarter (trend)", "Engagement type", "Project manager", "Low scores and their follow-up"):
        assert section in text
    assert "Strongest:" in text and "Weakest:" in text
    verbatims = text.split("Verbatims (newest first)", 1)[1]
    assert "No comments this quarter" not in verbatims and len(verbatims.splitlines()) > 5
    links = [a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "a[href*='/-/issues/']")]
    assert links and all(link.startswith(gitlab_url) for link in links)
    chart = browser.find_element(By.TAG_NAME, "img")
    assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", chart) == 800
    browser.set_window_size(1000, 2400)
    browser.save_screenshot(str(tmp_path / "csat-report.png"))
    assert (tmp_path / "csat-report.png").stat().st_size > 50_000

    # the same report on the "PS CSAT" page of the Airflow UI, logged in, in the browser
    with serving(api_server[0].app) as base:
        browser.get(f"{base}/ps-csat/trend.png")  # any page of the origin, to set its cookie
        browser.add_cookie({"name": "_token", "value": api_server[1], "path": "/"})
        browser.get(f"{base}/ps-csat/")
        assert browser.find_element(By.TAG_NAME, "h2").text == f"PS customer satisfaction, {period}"
        assert f"CSAT {csat_pct}% (n={answers})" in browser.find_element(By.ID, "headline").text
        browser.save_screenshot(str(tmp_path / "ps-csat-page.png"))
    assert (tmp_path / "ps-csat-page.png").stat().st_size > 50_000

    [mail] = [m for m in csat.smtp.store.all() if "PS CSAT" in m["subject"]]
    assert mail["subject"].startswith(f"[ps-integrations] PS CSAT {period}: CSAT {csat_pct}% (n={answers})")
    assert "Low scores (1 or 2)" in mail["text"] and "cid:" in mail["html"]


def _csv(period: str, name: str) -> list[dict[str, str]]:
    import csv
    import io

    text = ExportStore.from_variables().read_bytes(f"csat/{period}", name).decode("utf-8")
    return list(csv.DictReader(io.StringIO(text)))


@contextlib.contextmanager
def serving(app):
    """``app`` on a free local port (uvicorn in a thread) for the browser."""
    import threading
    import time

    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
