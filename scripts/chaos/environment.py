"""The harness's own Airflow home and pinned clock, set before Airflow is first imported.

Airflow reads its configuration when first imported, so ``prepare()`` runs before any module of the
harness imports it (as ``tests/conftest.py`` does for the test suite). The harness uses its own
Airflow home (``.chaos/airflow``) so it never shares a metadata database with a test run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORK_DIR = Path(os.environ.get("PS_CHAOS_DIR", ROOT / ".chaos"))
AIRFLOW_HOME = WORK_DIR / "airflow"
# The moment the test suite pins the product's clock to (shortly after the seeds' end date).
PINNED_NOW = datetime.fromisoformat("2026-11-23T10:00:00+00:00")


def prepare() -> None:
    """Point Airflow at the harness's home and the product's DAGs; pin the product's clock."""
    sys.path[:0] = [str(ROOT / "plugins"), str(ROOT)]
    # noise of a test-client import inside FastAPI, printed once per harness otherwise
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from ps_integrations import clock

    os.environ["AIRFLOW_HOME"] = str(AIRFLOW_HOME)
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ["PS_DEADLINE_ALERTS"] = "off"  # dag.test() cannot finish a run of a DAG with deadlines
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
    os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(ROOT / "plugins")
    os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{AIRFLOW_HOME / 'airflow.db'}"
    os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
    os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = os.environ.get("PS_CHAOS_AIRFLOW_LOG_LEVEL", "WARNING")
    os.environ["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] = json.dumps(
        [
            {
                "name": "dags-folder",
                "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                "kwargs": {"path": str(ROOT / "dags")},
            }
        ]
    )
    os.environ.setdefault(clock.PIN_VARIABLE, clock.pin_value(PINNED_NOW))
    for key in list(os.environ):
        if key.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_")):
            del os.environ[key]


def migrate_airflow_db() -> None:
    """A migrated metadata database for ``dag.test()`` (created once, reused by later runs)."""
    AIRFLOW_HOME.mkdir(parents=True, exist_ok=True)
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True, env=os.environ.copy())
