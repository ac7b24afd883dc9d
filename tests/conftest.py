"""Shared fixtures: an isolated Airflow home, the sandbox, and the product's connections.

Airflow reads its configuration when first imported, so the environment is set here, before
any test module imports it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from ps_integrations import clock

ROOT = Path(__file__).resolve().parents[1]
AIRFLOW_HOME = Path(os.environ.get("PS_TEST_AIRFLOW_HOME", ROOT / ".test-airflow"))
os.environ["AIRFLOW_HOME"] = str(AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
# dag.test() cannot finish a run of a DAG with deadlines in Airflow 3.3.2 (see ps_integrations.alerts)
os.environ["PS_DEADLINE_ALERTS"] = "off"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(ROOT / "plugins")
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{AIRFLOW_HOME / 'airflow.db'}"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
# A second DAG bundle holds DAGs that only tests run (dag.test() needs them serialised from a bundle).
DAG_FIXTURES = ROOT / "tests" / "dag_fixtures"
os.environ["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] = json.dumps(
    [
        {
            "name": "dags-folder",
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(ROOT / "dags")},
        },
        {
            "name": "test-dags",
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(DAG_FIXTURES)},
        },
    ]
)
# One clock for the product, the sandbox and every Airflow subprocess, pinned to a fixed moment (shortly
# after the seeds' end date) whatever date the machine has: no test may depend on the day it runs.
# PS_TEST_PINNED_NOW moves it (the calendar guard in `make test` runs the date-sensitive tests again
# elsewhere); the seeds stay where they are.
PINNED_NOW = datetime.fromisoformat(os.environ.get("PS_TEST_PINNED_NOW", "2026-11-23T10:00:00+00:00"))
os.environ[clock.PIN_VARIABLE] = clock.pin_value(PINNED_NOW)
# Tests must not inherit a developer's or the machine's connections and variables.
for key in list(os.environ):
    if key.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_")):
        del os.environ[key]


def _migrate_airflow_db() -> None:
    AIRFLOW_HOME.mkdir(parents=True, exist_ok=True)
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True, env=os.environ.copy())


@pytest.fixture(scope="session", autouse=True)
def dag_runs_on_the_pinned_clock():
    """``dag.test()`` dates a run by the real clock when no logical date is given; in tests the
    product's pinned clock dates it, so data intervals follow the pinned moment too."""
    from airflow.sdk import DAG
    from airflow.sdk.definitions._internal.types import NOTSET

    real_test = DAG.test

    def test_on_pinned_clock(self, *args, logical_date=NOTSET, **kwargs):
        if logical_date is NOTSET:
            logical_date = clock.now()
        kwargs.setdefault("run_after", logical_date or clock.now())
        return real_test(self, *args, logical_date=logical_date, **kwargs)

    DAG.test = test_on_pinned_clock  # type: ignore[method-assign]
    yield
    DAG.test = real_test  # type: ignore[method-assign]


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated Airflow metadata DB (SQLite) for real DAG runs."""
    _migrate_airflow_db()
    return AIRFLOW_HOME


@pytest.fixture(scope="session")
def sandbox_server(tmp_path_factory):
    """Every stand-in, the SMTP sink and S3, on free local ports, for the whole session."""
    from sandbox.core.server import SandboxServer
    from sandbox.seeds import load_seed_file

    server = SandboxServer(load_seed_file(), state_dir=tmp_path_factory.mktemp("sandbox")).start()
    yield server
    server.stop()


@pytest.fixture
def sandbox(sandbox_server):
    """The session's sandbox, back to the default seed with no faults and no mail."""
    from sandbox.seeds import load_seed_file

    sandbox_server.load_seed(load_seed_file())
    return sandbox_server


@pytest.fixture
def state_db_uri(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'state.db'}"


@pytest.fixture
def product_env(airflow_db, monkeypatch, sandbox, state_db_uri, tmp_path):
    """Connections and variables pointing the product at the sandbox and a fresh SQLite state DB
    (and a migrated Airflow metadata DB, for the DAG runs these tests make)."""
    for conn_id, definition in sandbox.airflow_connections().items():
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(definition))
    monkeypatch.setenv("AIRFLOW_CONN_PS_STATE", state_db_uri)
    monkeypatch.setenv("AIRFLOW_VAR_PS_EXPORTS_BASE", (tmp_path / "exports").as_uri())
    monkeypatch.setenv("AIRFLOW_VAR_PS_ALERT_RECIPIENTS", "ps-ops@example.com")
    return sandbox


@pytest.fixture
def postgres_uri() -> str:
    """The throwaway cluster started by scripts/with_postgres.sh (make test)."""
    uri = os.environ.get("PS_TEST_POSTGRES_URI")
    if not uri:
        if os.environ.get("PS_ALLOW_NO_POSTGRES") == "1":
            pytest.skip("PS_TEST_POSTGRES_URI not set and PS_ALLOW_NO_POSTGRES=1")
        pytest.fail("PS_TEST_POSTGRES_URI is not set: run the tests through `make test`")
    return uri


@pytest.fixture
def browser():
    """Debian's chromium through its chromedriver (no browser download)."""
    import shutil

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (binary and driver):
        pytest.fail("install Debian's chromium and chromium-driver (bash .ci/run does)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    chrome = webdriver.Chrome(service=Service(driver), options=options)
    chrome.set_page_load_timeout(30)
    chrome.implicitly_wait(10)  # find_element waits for pages still loading (a form POST's answer)
    yield chrome
    chrome.quit()
