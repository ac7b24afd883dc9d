"""`make test-distributed`: the product on Airflow's distributed setup, on this machine.

PostgreSQL (the throwaway cluster of scripts/with_postgres.sh), Redis (Debian's redis-server), the
api-server, scheduler, dag-processor, triggerer, two Celery workers (concurrency 1, hostnames
worker-1 and worker-2), the sandbox and the CSAT response service. Then:

1. the opportunity sync runs slowly (GitLab latency) and the worker running it is killed with
   SIGKILL in the middle; the scheduler notices (heartbeat timeout lowered), the retry runs on the
   other worker, and GitLab ends with exactly one issue per won opportunity;
2. every product DAG is triggered through the REST API; the task instances' hostnames show both
   workers ran tasks;
3. the sandbox is reset to the same seed and the same DAGs run standalone (`airflow dags test`);
   the end states match: issues by marker, mails by recipient and subject, export bytes.

Exits non-zero, naming what differs, when any check fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
WORK = Path(tempfile.mkdtemp(prefix="ps-distributed-"))
BASE_URI = os.environ.get("PS_TEST_POSTGRES_URI", "")
RUN_CONF = {
    "ps_opportunity_sync": {"since": "2024-01-01T00:00:00Z"},
    # explicit: a manual run and `airflow dags test` would otherwise date it by different intervals
    "ps_sku_reconciliation": {"as_of": time.strftime("%Y-%m-%d", time.gmtime())},
    "ps_timesheet_rollup": {"period_start": "2026-08-31", "period_end": "2026-11-15"},
    "ps_csat_surveys": {"since": "2024-01-01T00:00:00Z"},
    "ps_platform_smoke": {},
}
LAST = {"ps_csat_summary": {}}
VARIABLES = {
    "ps_opportunity_sync_config": {"writeback_field": "GitLab_Issue_URL__c", "coordinator": "delivery-manager-1"},
    "ps_csat_surveys_config": {"allow_list": ["example.com"]},
}
MARKER = re.compile(r"ps-integrations:opportunity-id=([A-Za-z0-9]+)")


def log(message: str) -> None:
    print(f"[distributed {time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def database(name: str) -> str:
    from sqlalchemy import create_engine, text

    with create_engine(BASE_URI, isolation_level="AUTOCOMMIT").connect() as connection:
        connection.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        connection.execute(text(f"CREATE DATABASE {name}"))
    return BASE_URI.rsplit("/", 1)[0] + "/" + name


class Processes:
    def __init__(self) -> None:
        self.running: dict[str, subprocess.Popen] = {}

    def start(self, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen:
        handle = (WORK / f"{name}.log").open("ab")
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.running[name] = process
        return process

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        process = self.running.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        process.wait(timeout=60)

    def stop_all(self) -> None:
        for name in list(self.running):
            try:
                self.kill(name, signal.SIGTERM)
            except subprocess.TimeoutExpired:
                self.kill(name, signal.SIGKILL)


def wait_for(what: str, check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception:  # noqa: S110 - not up yet
            pass
        time.sleep(1)
    raise SystemExit(f"timed out waiting for {what} (logs in {WORK})")


class Api:
    def __init__(self, base: str, token: str) -> None:
        self.base, self.session = base, requests.Session()
        self.session.trust_env = False
        self.session.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.session.request(method, f"{self.base}/api/v2{path}", timeout=30, **kwargs)
        response.raise_for_status()
        return response.json() if response.content else None

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> str:
        self.call("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
        run = self.call("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf})
        log(f"triggered {dag_id} ({run['dag_run_id']})")
        return str(run["dag_run_id"])

    def state(self, dag_id: str, run_id: str) -> str:
        return str(self.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"])

    def tasks(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return list(self.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"])

    def wait(self, runs: dict[str, str], timeout: float = 900) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = {dag_id: self.state(dag_id, run_id) for dag_id, run_id in runs.items()}
            if all(state in ("success", "failed") for state in states.values()):
                failed = [dag_id for dag_id, state in states.items() if state != "success"]
                if failed:
                    raise SystemExit(f"runs failed: {failed} (logs in {WORK})")
                return
            time.sleep(3)
        raise SystemExit(f"runs did not finish in {timeout} s: {runs}")


# --- the end state --------------------------------------------------------------------------------------
def end_state(sandbox: dict[str, Any], exports: Path) -> dict[str, Any]:
    admin = sandbox["admin"]
    issues = requests.get(f"{admin}/gitlab/state", timeout=30).json()
    by_marker: dict[str, list[tuple[str, tuple[str, ...], str]]] = {}
    for issue in issues.get("issues", []):
        match = MARKER.search(issue.get("description") or "")
        if match:
            by_marker.setdefault(match.group(1), []).append(
                (issue["title"], tuple(sorted(issue.get("labels", []))), issue.get("state", ""))
            )
    mails = sorted(
        (",".join(mail["rcpt_tos"]), mail["subject"])
        for mail in requests.get(f"{admin}/smtp/messages", timeout=30).json()
        # failure alerts and the smoke test's mail name their run: not part of the product's end state
        if "failed" not in mail["subject"].lower() and "platform smoke test" not in mail["subject"]
    )
    files = {}
    for path in sorted(exports.rglob("*")):
        if path.is_file() and path.name != "manifest.json" and "smoke" not in path.parts:
            files[str(path.relative_to(exports))] = path.read_bytes()
    return {"issues": by_marker, "mails": mails, "files": files}


def csat_limits_shared(csat_port: int, redis_port: int) -> list[str]:
    """The CSAT service counts page views in Redis, where every service process sees them."""
    import redis

    counters = redis.Redis(host="127.0.0.1", port=redis_port, db=1)
    before = counters.dbsize()
    wait_for("the CSAT service", lambda: requests.get(f"http://127.0.0.1:{csat_port}/healthz", timeout=5).ok, 60)
    requests.get(f"http://127.0.0.1:{csat_port}/r/not-a-token", timeout=10)  # a page view (404), counted first
    if counters.dbsize() <= before:
        return ["the CSAT service's rate-limit counters are not in Redis (PS_CSAT_RATE_LIMIT_STORAGE)"]
    log(f"CSAT rate-limit counters shared through Redis: {counters.dbsize()} key(s) in database 1")
    return []


def compare(distributed: dict[str, Any], standalone: dict[str, Any]) -> list[str]:
    problems = []
    duplicates = {marker: found for marker, found in distributed["issues"].items() if len(found) != 1}
    if duplicates:
        problems.append(f"opportunities with more than one issue: {sorted(duplicates)}")
    if distributed["issues"] != standalone["issues"]:
        differing = sorted(
            set(distributed["issues"]) ^ set(standalone["issues"])
            | {m for m in distributed["issues"] if distributed["issues"][m] != standalone["issues"].get(m)}
        )
        problems.append(f"issues differ for {len(differing)} opportunities, e.g. {differing[:3]}")
    if distributed["mails"] != standalone["mails"]:
        problems.append(f"mails differ: {sorted(set(distributed['mails']) ^ set(standalone['mails']))[:5]}")
    if set(distributed["files"]) != set(standalone["files"]):
        problems.append(f"export files differ: {sorted(set(distributed['files']) ^ set(standalone['files']))[:5]}")
    differing_bytes = [
        name
        for name in distributed["files"]
        if name in standalone["files"] and distributed["files"][name] != standalone["files"][name]
    ]
    if differing_bytes:
        problems.append(f"export bytes differ: {differing_bytes[:5]}")
    return problems


# --- the run ----------------------------------------------------------------------------------------------
def main() -> int:
    if not BASE_URI:
        raise SystemExit("run through scripts/with_postgres.sh (make test-distributed)")
    processes = Processes()
    try:
        return run(processes)
    finally:
        processes.stop_all()


def run(processes: Processes) -> int:
    log(f"working directory {WORK}")
    redis_port = free_port()
    processes.start(
        "redis",
        ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        dict(os.environ),
    )
    processes.start(
        "sandbox",
        [
            sys.executable,
            "-m",
            "sandbox",
            "serve",
            "--state-dir",
            str(WORK / "sandbox"),
            "--ports",
            "admin=0,smtp=0,s3=0",
        ],
        dict(os.environ),
    )
    sandbox = wait_for("the sandbox", lambda: json.loads((WORK / "sandbox" / "sandbox.json").read_text()), 120)
    secret, csat_port, api_port = secrets.token_urlsafe(32), free_port(), free_port()
    state_uri = database("ps_state_distributed")
    processes.start(
        "csat-service",
        [sys.executable, "-m", "ps_integrations.csat_service"],
        {
            **os.environ,
            "PS_CSAT_DATABASE_URL": state_uri,
            "PS_CSAT_SECRET_KEY": secret,
            "PS_CSAT_PORT": str(csat_port),
            "PS_CSAT_INSECURE_COOKIES": "1",
            # as docker-compose.yml: the rate-limit counters in the deployment's Redis (database 1)
            "PS_CSAT_RATE_LIMIT_STORAGE": f"redis://127.0.0.1:{redis_port}/1",
            "FORWARDED_ALLOW_IPS": "127.0.0.1",
        },
    )
    base_env = {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_VAR_PS_ALERT_RECIPIENTS": "ps-ops@example.com",
        "AIRFLOW_CONN_PS_CSAT": json.dumps(
            {"conn_type": "http", "host": f"http://localhost:{csat_port}", "password": secret}
        ),
        **{f"AIRFLOW_VAR_{name.upper()}": json.dumps(value) for name, value in VARIABLES.items()},
        **{f"AIRFLOW_CONN_{cid.upper()}": json.dumps(value) for cid, value in sandbox["airflow_connections"].items()},
    }
    metadata = database("airflow_distributed").replace("postgresql://", "postgresql+psycopg2://")
    env = {
        **base_env,
        "AIRFLOW_HOME": str(WORK / "airflow"),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata,
        "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + metadata.replace("+psycopg2", ""),
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__BASE_URL": f"http://localhost:{api_port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{api_port}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "ps_integrations.deploy.worker_hostname",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
        # only the runs triggered here: unpausing would also start each DAG's latest scheduled interval
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
        "AIRFLOW_CONN_PS_STATE": state_uri,
        "AIRFLOW_VAR_PS_EXPORTS_BASE": (WORK / "exports-distributed").as_uri(),
    }
    log("airflow db migrate (metadata on PostgreSQL)")
    subprocess.run([str(VENV_BIN / "airflow"), "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
    airflow = str(VENV_BIN / "airflow")
    for name, command in (
        ("api-server", [airflow, "api-server", "--port", str(api_port)]),
        ("scheduler", [airflow, "scheduler"]),
        ("dag-processor", [airflow, "dag-processor"]),
        ("triggerer", [airflow, "triggerer"]),
    ):
        processes.start(name, command, env)

    def start_worker(number: int) -> None:
        hostname = f"worker-{number}"
        processes.start(
            hostname,
            [airflow, "celery", "worker", "--concurrency", "1", "--celery-hostname", f"{hostname}@%h"],
            {**env, "PS_WORKER_HOSTNAME": hostname},
        )

    start_worker(1)
    start_worker(2)
    base = f"http://localhost:{api_port}"
    wait_for("the API server", lambda: requests.get(f"{base}/api/v2/monitor/health", timeout=5).ok, 300)
    passwords = WORK / "airflow" / "simple_auth_manager_passwords.json.generated"
    password = wait_for("the admin password", lambda: json.loads(passwords.read_text())["admin"], 60)
    token = requests.post(f"{base}/auth/token", json={"username": "admin", "password": password}, timeout=30).json()
    api = Api(base, token["access_token"])
    wanted = {*RUN_CONF, *LAST}
    wait_for(
        "the DAGs to be parsed",
        lambda: wanted <= {dag["dag_id"] for dag in api.call("GET", "/dags", params={"limit": 100})["dags"]},
        300,
    )

    # 1. a worker killed in the middle of the opportunity sync
    admin = sandbox["admin"]
    requests.put(f"{admin}/gitlab/faults", json={"latency_ms": 250}, timeout=10).raise_for_status()
    sync_run = api.trigger("ps_opportunity_sync", RUN_CONF["ps_opportunity_sync"])

    def sync_task_running() -> dict[str, Any] | None:
        for task in api.tasks("ps_opportunity_sync", sync_run):
            if task["task_id"] == "sync_opportunities" and task["state"] == "running" and task.get("hostname"):
                created = requests.get(f"{admin}/gitlab/calls", timeout=10).json().get("create_issue", 0)
                return task if created >= 5 else None
        return None

    victim = wait_for("the sync to be creating issues", sync_task_running, 300)
    log(f"SIGKILL to {victim['hostname']} while it runs the sync (try {victim['try_number']})")
    processes.kill(victim["hostname"], signal.SIGKILL)
    requests.put(f"{admin}/gitlab/faults", json={}, timeout=10).raise_for_status()
    api.wait({"ps_opportunity_sync": sync_run}, timeout=900)
    [sync_task] = [t for t in api.tasks("ps_opportunity_sync", sync_run) if t["task_id"] == "sync_opportunities"]
    log(f"the sync finished on {sync_task['hostname']} (try {sync_task['try_number']})")
    if sync_task["try_number"] < 2 or sync_task["hostname"] == victim["hostname"]:
        raise SystemExit("the killed try was not retried on the other worker")
    start_worker(int(victim["hostname"].rsplit("-", 1)[1]))

    # 2. every DAG through the REST API, on both workers
    runs = {"ps_opportunity_sync": sync_run}
    rest = {dag_id: api.trigger(dag_id, conf) for dag_id, conf in RUN_CONF.items() if dag_id != "ps_opportunity_sync"}
    api.wait(rest)
    runs.update(rest)
    for dag_id, conf in LAST.items():
        runs[dag_id] = api.trigger(dag_id, conf)
        api.wait({dag_id: runs[dag_id]})
    hostnames = {task.get("hostname") for dag_id, run_id in runs.items() for task in api.tasks(dag_id, run_id)}
    log(f"task instances ran on: {sorted(h for h in hostnames if h)}")
    if not {"worker-1", "worker-2"} <= hostnames:
        raise SystemExit(f"both workers should have run tasks, saw {sorted(h for h in hostnames if h)}")
    distributed = end_state(sandbox, WORK / "exports-distributed")
    log(
        f"distributed end state: {len(distributed['issues'])} opportunities with issues, "
        f"{len(distributed['mails'])} mails, {len(distributed['files'])} export files"
    )

    # 3. the same seed, standalone
    requests.post(f"{admin}/reset", timeout=60).raise_for_status()
    requests.delete(f"{admin}/smtp/messages", timeout=10).raise_for_status()
    standalone_env = {
        **base_env,
        "AIRFLOW_HOME": str(WORK / "standalone"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{WORK / 'standalone.db'}",
        "AIRFLOW_CONN_PS_STATE": database("ps_state_standalone"),
        "AIRFLOW_VAR_PS_EXPORTS_BASE": (WORK / "exports-standalone").as_uri(),
        "PS_DEADLINE_ALERTS": "off",  # airflow dags test cannot finish DAGs with deadlines (ps_integrations.alerts)
    }
    subprocess.run([airflow, "db", "migrate"], env=standalone_env, check=True, stdout=subprocess.DEVNULL)
    for dag_id, conf in {**RUN_CONF, **LAST}.items():
        log(f"standalone: airflow dags test {dag_id}")
        result = subprocess.run(
            [airflow, "dags", "test", dag_id, "--conf", json.dumps(conf)],
            env=standalone_env,
            stdout=(WORK / f"standalone-{dag_id}.log").open("wb"),
            stderr=subprocess.STDOUT,
            check=False,
        )
        if result.returncode != 0:
            raise SystemExit(f"standalone {dag_id} failed (log {WORK / f'standalone-{dag_id}.log'})")
    standalone = end_state(sandbox, WORK / "exports-standalone")
    problems = compare(distributed, standalone) + csat_limits_shared(csat_port, redis_port)
    if problems:
        for problem in problems:
            log(f"DIFFERENT: {problem}")
        return 1
    log(
        "same end state distributed and standalone: issues by marker, mails by recipient and subject, "
        "export bytes; no duplicate issue after the SIGKILL"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
