"""`make demo`: start the sandbox and Airflow, run every DAG, print what each did.

Everything runs locally: the sandbox stands in for Salesforce, GitLab, Zuora, SMTP and S3;
Airflow runs as `airflow standalone` with a SQLite metadata DB; the state DB is a SQLite file.
Exit code 0 when every run succeeded. Everything started is stopped at the end unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from ps_integrations import clock

ROOT = Path(__file__).resolve().parents[1]
DEMO_DIR = ROOT / ".demo"
VENV_BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))  # the sandbox package (its CSAT history model)

# Conf for the demo's manual runs: each DAG shows its whole seeded history, not one interval.
DEMO_RUN_CONF: dict[str, dict[str, Any]] = {
    "ps_opportunity_sync": {"since": "2024-01-01T00:00:00Z"},
    "ps_csat_surveys": {"since": "2024-01-01T00:00:00Z"},
    "ps_timesheet_rollup": {"period_start": "2026-08-31", "period_end": "2026-11-15"},
    # the seeded closes (2025-2026, with SOW amounts) plus the engagements the demo closes (their iids are
    # added at run time); not the CSAT history's recent engagements, which carry no SOW amount
    "ps_engagement_closeout": {"since": "2024-01-01T00:00:00Z", "until": "2026-11-01T00:00:00Z"},
}
# Job configuration the demo sets (Airflow variables, JSON).
DEMO_VARIABLES: dict[str, Any] = {
    "ps_opportunity_sync_config": {"writeback_field": "GitLab_Issue_URL__c", "coordinator": "delivery-manager-1"},
    # not production: only addresses under example.com (all of the sandbox's) are mailed
    "ps_csat_surveys_config": {"allow_list": ["example.com"]},
    # the project managers report to the head of PS (the engineers to the group's one delivery manager):
    # every week's certification issues, whatever the date the demo runs on
    "ps_timesheet_rollup_config": {
        "managers": {pm: "head-of-ps" for pm in ("aisha.pm", "henrik.pm", "mateo.pm", "sofia.pm")}
    },
    "ps_engagement_closeout_config": {
        "controller": "controller@ps.example.com",
        "finance_business_partner": "fbp.sales@ps.example.com",
    },
    # issue #19: Salesforce's price book as the third system and the services.yml merge request
    "ps_sku_reconciliation_config": {
        "salesforce": True,
        "salesforce_price_book": "Professional Services",
        "services_yml_merge_request": True,
    },
}
CSAT_SECRET = secrets.token_urlsafe(32)


def log(message: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port(preferred: int) -> int:
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", preferred)) != 0:
            return preferred
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start(command: list[str], log_path: Path, env: dict[str, str]) -> subprocess.Popen:
    handle = log_path.open("wb")
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen | None, name: str) -> None:
    if process is None or process.poll() is not None:
        return
    log(f"stopping {name}")
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def wait_for(what: str, check, timeout: float, process: subprocess.Popen, log_path: Path) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what}: the process exited ({process.returncode}); see {log_path}")
        try:
            result = check()
            if result:
                return result
        except (requests.RequestException, OSError, ValueError, KeyError):
            pass
        time.sleep(1)
    raise SystemExit(f"timed out waiting for {what}; see {log_path}")


def dag_ids() -> list[str]:
    """Parse dags/ locally: the DAGs to run, and import errors reported before anything starts."""
    env = {**os.environ, "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW_HOME": str(DEMO_DIR / "airflow")}
    code = (
        "import json,sys\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag(dag_folder={str(ROOT / 'dags')!r})\n"
        "errors = {path: str(error) for path, error in bag.import_errors.items()}\n"
        "print(json.dumps({'ids': sorted(bag.dag_ids), 'errors': errors}))\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "PYTHONPATH": str(ROOT / "plugins")},
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(output.stdout.strip().splitlines()[-1])
    if result["errors"]:
        raise SystemExit(f"DAG import errors: {json.dumps(result['errors'], indent=2)}")
    return result["ids"]


class AirflowApi:
    def __init__(self, base_url: str, username: str, password: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        self.session.trust_env = False
        response = self.session.post(
            f"{base_url}/auth/token", json={"username": username, "password": password}, timeout=30
        )
        response.raise_for_status()
        self.session.headers["Authorization"] = f"Bearer {response.json()['access_token']}"

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        # generous: on a loaded machine the standalone API server can stall for half a minute
        for attempt in range(1, 6):
            response = self.session.request(method, f"{self.base_url}/api/v2{path}", timeout=120, **kwargs)
            # the demo's Airflow runs on SQLite: while the scheduler holds the write lock the API answers
            # 500 ("database is locked"); reads and un-pausing are safe to ask again
            if response.status_code < 500 or method.upper() not in ("GET", "PATCH") or attempt == 5:
                break
            time.sleep(2 * attempt)
        response.raise_for_status()
        return response.json() if response.content else None


def csat_service_env(port: int) -> dict[str, str]:
    """The CSAT response service: its own process on the demo's state DB (plain HTTP locally)."""
    return {
        **os.environ,
        "PS_CSAT_DATABASE_URL": f"sqlite:///{DEMO_DIR / 'state.db'}",
        "PS_CSAT_SECRET_KEY": CSAT_SECRET,
        "PS_CSAT_PORT": str(port),
        "PS_CSAT_INSECURE_COOKIES": "1",
    }


def airflow_env(sandbox_info: dict[str, Any], port: int, csat_port: int) -> dict[str, str]:
    airflow_home = DEMO_DIR / "airflow"
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://localhost:{port}",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        # The state DB and exports of the demo: SQLite file and the sandbox's S3.
        "AIRFLOW_CONN_PS_STATE": f"sqlite:///{DEMO_DIR / 'state.db'}",
        "AIRFLOW_VAR_PS_EXPORTS_BASE": "s3://ps-exports",
        "AIRFLOW_VAR_PS_EXPORTS_CONN_ID": "aws_sandbox",
        "AIRFLOW_VAR_PS_ALERT_RECIPIENTS": "ps-ops@example.com",
        "PS_SANDBOX_CA_BUNDLE": str(sandbox_info["ca_bundle"]),
        "AIRFLOW_CONN_PS_CSAT": json.dumps(
            {"conn_type": "http", "host": f"http://localhost:{csat_port}", "password": CSAT_SECRET}
        ),
    }
    for name, value in DEMO_VARIABLES.items():
        env[f"AIRFLOW_VAR_{name.upper()}"] = json.dumps(value)
    for conn_id, definition in sandbox_info["airflow_connections"].items():
        env[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(definition)
    return env


def run_all(api: AirflowApi, ids: list[str], timeout: float) -> dict[str, dict[str, Any]]:
    runs: dict[str, dict[str, Any]] = {}
    for dag_id in ids:
        api.call("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
        run = api.call(
            "POST",
            f"/dags/{dag_id}/dagRuns",
            json={"logical_date": None, "conf": DEMO_RUN_CONF.get(dag_id, {})},
        )
        runs[dag_id] = {"run_id": run["dag_run_id"], "state": run["state"]}
        log(f"triggered {dag_id} ({run['dag_run_id']})")
    deadline = time.monotonic() + timeout
    last_line = ""
    while time.monotonic() < deadline:
        for dag_id, run in runs.items():
            if run["state"] in ("success", "failed"):
                continue
            detail = api.call("GET", f"/dags/{dag_id}/dagRuns/{run['run_id']}")
            run["state"] = detail["state"]
            tasks = api.call("GET", f"/dags/{dag_id}/dagRuns/{run['run_id']}/taskInstances")["task_instances"]
            done = sum(1 for task in tasks if task["state"] in ("success", "failed", "skipped", "upstream_failed"))
            run["progress"] = f"{done}/{len(tasks)} tasks"
        line = ", ".join(f"{dag_id}: {run['state']} ({run.get('progress', '')})" for dag_id, run in runs.items())
        if line != last_line:
            log(line)
            last_line = line
        if all(run["state"] in ("success", "failed") for run in runs.values()):
            break
        time.sleep(3)
    return runs


# The DAGs the demo runs after the others (they report on what the others produced).
RUN_LAST = ("ps_csat_summary", "ps_engagement_closeout")
# Open engagement issues the demo closes before the close-out runs (after the timesheet roll-up).
DEMO_CLOSES = ("professional-services/engagements", (1, 5))


def close_engagements(sandbox_info: dict[str, Any]) -> list[int]:
    """Close a few open engagement issues through GitLab's REST API, as their project managers would."""
    from urllib.parse import quote

    gitlab = sandbox_info["airflow_connections"]["gitlab_default"]
    extra = gitlab.get("extra") or {}
    extra = json.loads(extra) if isinstance(extra, str) else extra
    project, iids = DEMO_CLOSES
    for iid in iids:
        requests.put(
            f"{gitlab['host'].rstrip('/')}/api/v4/projects/{quote(project, safe='')}/issues/{iid}",
            headers={"PRIVATE-TOKEN": gitlab["password"]},
            json={"state_event": "close"},
            verify=extra.get("ca_bundle") or True,
            timeout=30,
        ).raise_for_status()
    return list(iids)


def show_closeouts(exports: Path) -> None:
    """One line per engagement close-out analysis the demo produced (the total row of analysis.csv)."""
    import csv

    files = sorted(exports.glob("*/engagement_closeout/*/*/analysis.csv"))
    if files:
        print("\n=== Engagement close-outs (cost vs actual) ===", flush=True)
    for path in files:
        total = list(csv.DictReader(path.open(encoding="utf-8")))[-1]
        print(
            f"{total['account'][:24]:24} margin {total['margin_pct_rounded'] or '-':>6}% "
            f"(target {total['target_margin_pct']}%), {total['percent_complete_rounded'] or '-':>6}% complete, "
            f"cost {total['cost_rounded']} / revenue {total['revenue_rounded']} {total['currency']}  "
            f"{path.parent.relative_to(exports)}",
            flush=True,
        )


# --- CSAT: two years of history, the current surveys answered through the real response service -------
CSAT_HISTORY_END = clock.now()  # the history ends now: the current quarter has its closes and answers


def csat_seed() -> Path:
    """The sandbox's default seed plus the CSAT section: the last 14 days' closed engagements in
    GitLab and Salesforce (sandbox/seeds/csat.py), for ps_csat_surveys to survey for real."""
    from sandbox.seeds import load_seed_file

    seed = {**load_seed_file(), "csat": {"end": CSAT_HISTORY_END.isoformat()}}
    path = DEMO_DIR / "sandbox-seed.json"
    path.write_text(json.dumps(seed), encoding="utf-8")
    return path


def seed_csat_history(sandbox_info: dict[str, Any]) -> int:
    """Everything that closed before the last 14 days, as earlier survey runs and answers left it."""
    from sqlalchemy import create_engine

    from ps_integrations.state_store import StateStore
    from sandbox.seeds import csat

    store = StateStore(engine=create_engine(f"sqlite:///{DEMO_DIR / 'state.db'}"))
    surveys = csat.history(CSAT_HISTORY_END)
    return csat.write_history(store, surveys, sandbox_info["systems"]["gitlab"])


def answer_surveys(sandbox_info: dict[str, Any]) -> tuple[int, int]:
    """Play the customers of the survey mails: a mail scanner prefetches every link, then about four
    in ten contacts open their rating link and send the form. Returns (mails, answers)."""
    from sandbox.seeds import csat

    messages = requests.get(f"{sandbox_info['admin']}/smtp/messages", timeout=10).json()
    if isinstance(messages, dict):
        messages = messages.get("messages", [])
    surveys = [mail for mail in messages if str(mail.get("subject", "")).startswith("How did we do")]
    return len(surveys), len(csat.answer_mails(surveys, CSAT_HISTORY_END))


def summarize(api: AirflowApi, runs: dict[str, dict[str, Any]]) -> None:
    print("\n=== Summary ===", flush=True)
    for dag_id, run in runs.items():
        path = f"/dags/{dag_id}/dagRuns/{run['run_id']}"
        try:
            what = api.call("GET", f"{path}/taskInstances/summarize/xcomEntries/return_value")["value"]
        except requests.HTTPError:
            tasks = api.call("GET", f"{path}/taskInstances")["task_instances"]
            failed = [task["task_display_name"] for task in tasks if task["state"] in ("failed", "upstream_failed")]
            what = f"failed tasks: {', '.join(failed) or '-'} (see the task logs in the UI)"
        print(f"{dag_id:28} {run['state']:8} {what}", flush=True)


def mirror_exports(sandbox_info: dict[str, Any]) -> Path:
    """Copy the demo's S3 exports to .demo/exports so they can be opened locally."""
    import boto3

    s3 = sandbox_info["s3"]
    connection = sandbox_info["airflow_connections"]["aws_sandbox"]
    client = boto3.client(
        "s3",
        endpoint_url=s3["endpoint_url"],
        aws_access_key_id=connection["login"],
        aws_secret_access_key=connection["password"],
        region_name=s3["region_name"],
    )
    target = DEMO_DIR / "exports"
    for bucket in s3["buckets"]:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                destination = target / bucket / item["Key"]
                destination.parent.mkdir(parents=True, exist_ok=True)
                client.download_file(bucket, item["Key"], str(destination))
    return target


def run_summary_line(api: AirflowApi, dag_id: str, run: dict[str, Any]) -> str:
    path = f"/dags/{dag_id}/dagRuns/{run['run_id']}/taskInstances/summarize/xcomEntries/return_value"
    try:
        return f"{run['state']}: {api.call('GET', path)['value']}"
    except requests.HTTPError:
        return str(run["state"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keep", action="store_true", help="leave the sandbox and Airflow running")
    parser.add_argument("--port", type=int, default=8080, help="Airflow UI/API port (next free one if taken)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for the runs")
    args = parser.parse_args()

    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    DEMO_DIR.mkdir(parents=True)
    sandbox_process = airflow_process = csat_process = None
    exit_code = 1
    try:
        ids = dag_ids()
        log(f"DAGs: {', '.join(ids)}")
        log("starting the sandbox (stand-ins for Salesforce, GitLab, Zuora, SMTP, S3)")
        sandbox_log = DEMO_DIR / "sandbox.log"
        sandbox_process = start(
            [
                sys.executable,
                "-m",
                "sandbox",
                "serve",
                "--state-dir",
                str(DEMO_DIR / "sandbox"),
                "--ports",
                "admin=0",
                "--seed",
                str(csat_seed()),
            ],
            sandbox_log,
            dict(os.environ),
        )
        info_file = DEMO_DIR / "sandbox" / "sandbox.json"
        info = wait_for(
            "the sandbox",
            lambda: info_file.exists() and json.loads(info_file.read_text()),
            60,
            sandbox_process,
            sandbox_log,
        )
        log(f"CSAT: {seed_csat_history(info)} surveys of the last two years recorded in the state DB")
        csat_port = free_port(8090)
        log(f"starting the CSAT response service on port {csat_port}")
        csat_process = start(
            [sys.executable, "-m", "ps_integrations.csat_service"],
            DEMO_DIR / "csat_service.log",
            csat_service_env(csat_port),
        )
        port = free_port(args.port)
        log(f"starting Airflow (airflow standalone on port {port}; log: {DEMO_DIR / 'airflow.log'})")
        airflow_log = DEMO_DIR / "airflow.log"
        env = airflow_env(info, port, csat_port)
        airflow_process = start([str(VENV_BIN / "airflow"), "standalone"], airflow_log, env)
        base_url = f"http://localhost:{port}"
        session = requests.Session()
        session.trust_env = False
        wait_for(
            "the Airflow API server",
            lambda: session.get(f"{base_url}/api/v2/monitor/health", timeout=5).ok,
            300,
            airflow_process,
            airflow_log,
        )
        passwords = DEMO_DIR / "airflow" / "simple_auth_manager_passwords.json.generated"
        password = wait_for(
            "the admin password",
            lambda: json.loads(passwords.read_text())["admin"],
            60,
            airflow_process,
            airflow_log,
        )
        api = AirflowApi(base_url, "admin", password)
        wait_for(
            "the DAGs to be parsed",
            lambda: {dag["dag_id"] for dag in api.call("GET", "/dags", params={"limit": 100})["dags"]} >= set(ids),
            300,
            airflow_process,
            airflow_log,
        )
        runs = run_all(api, [dag_id for dag_id in ids if dag_id not in RUN_LAST], args.timeout)
        mails, answered = answer_surveys(info)
        log(f"CSAT: customers answered {answered} of {mails} survey mails through the response service")
        # the survey job again: follow-up issues for today's low scores (the summary links them)
        again = run_all(api, ["ps_csat_surveys"], args.timeout)["ps_csat_surveys"]
        log(f"CSAT: the survey job again, for today's answers: {run_summary_line(api, 'ps_csat_surveys', again)}")
        if again["state"] != "success" and "ps_csat_surveys" in runs:
            runs["ps_csat_surveys"]["state"] = again["state"]  # counts for the exit code
        closed = close_engagements(info)
        DEMO_RUN_CONF["ps_engagement_closeout"]["engagement_iids"] = closed
        log(f"closed engagement issues {closed} for the close-out to file")
        runs.update(run_all(api, [dag_id for dag_id in ids if dag_id in RUN_LAST], args.timeout))
        summarize(api, runs)
        exports = mirror_exports(info)
        show_closeouts(exports)
        print(f"\nExports (copied from the sandbox's S3): {exports}")
        print(f"Airflow UI: {base_url}  login: admin / {password}  (CSAT page: {base_url}/ps-csat/)")
        exit_code = 0 if all(run["state"] == "success" for run in runs.values()) else 1
        if args.keep:
            (DEMO_DIR / "pids").write_text(f"{sandbox_process.pid} {airflow_process.pid} {csat_process.pid}\n")
            print(f"Mail received by the SMTP sink: {info['admin']}/smtp/messages")
            print(f"CSAT response service (survey links in those mails): http://localhost:{csat_port}")
            print("Still running (KEEP=1). Stop with: make demo-stop")
            sandbox_process = airflow_process = csat_process = None
    except KeyboardInterrupt:
        log("interrupted")
    finally:
        stop(airflow_process, "Airflow")
        stop(csat_process, "the CSAT response service")
        stop(sandbox_process, "the sandbox")
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
