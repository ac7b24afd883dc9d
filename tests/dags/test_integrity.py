"""Every DAG in dags/ parses cleanly and follows the conventions in ps_integrations.conventions."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import pytest

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"
DAG_FILES = sorted(path for path in DAGS_DIR.glob("*.py") if not path.name.startswith("_"))


def _forbidden(*args, **kwargs):
    raise AssertionError("DAG files must not read connections or variables at parse time")


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk import BaseHook, Variable

    with (
        mock.patch.object(BaseHook, "get_connection", side_effect=_forbidden),
        mock.patch.object(Variable, "get", side_effect=_forbidden),
    ):
        return DagBag(dag_folder=str(DAGS_DIR))


def _dags(dagbag):
    return [dagbag.dags[dag_id] for dag_id in sorted(dagbag.dags)]


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda path: path.name)
def test_dag_file_imports_without_errors(dagbag, path):
    assert str(path) not in dagbag.import_errors, dagbag.import_errors.get(str(path))
    assert any(dag.fileloc == str(path) for dag in dagbag.dags.values()), f"{path.name} defines no DAG"


def test_dag_files_import_nothing_heavy_at_top_level():
    heavy = ("pandas", "zeep", "simple_salesforce", "gitlab", "matplotlib", "openpyxl", "boto3")
    for path in DAG_FILES:
        top_level = [line for line in path.read_text().splitlines() if line.startswith(("import ", "from "))]
        offenders = [line for line in top_level if any(f" {name}" in line or f"{name}." in line for name in heavy)]
        assert offenders == [], f"{path.name} imports heavy modules at top level: {offenders}"


def test_every_dag_follows_the_conventions(dagbag):
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier
    from airflow.sdk import CronDataIntervalTimetable
    from airflow.timetables.simple import NullTimetable

    assert dagbag.dags, "no DAGs found"
    for dag in _dags(dagbag):
        where = dag.dag_id
        assert dag.dag_id.startswith("ps_"), where
        assert "ps-integrations" in dag.tags, where
        assert dag.owner == "ps-integrations", where
        doc = dag.doc_md or ""
        for heading in ("Connections", "Variables", "Re-running and backfilling"):
            assert heading in doc, f"{where}: doc_md lacks a '{heading}' section"
        assert isinstance(dag.timetable, NullTimetable | CronDataIntervalTimetable) or not getattr(
            dag.timetable, "_expression", None
        ), f"{where}: use CronDataIntervalTimetable, a bare cron gives zero-width data intervals"
        assert dag.catchup is False, where
        for task in dag.tasks:
            assert task.retries >= 1, f"{where}.{task.task_id}: retries"
            assert task.retry_exponential_backoff, f"{where}.{task.task_id}: back-off"
            callbacks = task.on_failure_callback or []
            callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
            assert any(isinstance(callback, SmtpNotifier) for callback in callbacks), f"{where}.{task.task_id}"
            assert task.task_display_name != task.task_id, f"{where}.{task.task_id}: needs a display name"
        leaves = [task.task_id for task in dag.tasks if not task.downstream_list]
        assert leaves == ["summarize"], f"{where}: the run summary task must be the only last task, got {leaves}"


def test_plugins_folder_loads_no_library_module_under_a_bare_name():
    """Airflow imports each plugins/*.py as a top-level module; ps_integrations must be ignored."""
    from airflow._shared.module_loading import find_path_from_directory

    plugins = DAGS_DIR.parent / "plugins"
    loaded = [
        Path(path).relative_to(plugins) for path in find_path_from_directory(str(plugins), ".airflowignore", "glob")
    ]
    assert [path for path in loaded if path.parts[0] == "ps_integrations"] == []
