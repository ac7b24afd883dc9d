"""Benchmark: the opportunity sync's own code over HTTP against the stand-ins.

1. Call counts: GitLab writes per new opportunity, Salesforce calls, and a run with nothing changed.
2. Throughput under GitLab's limit: 2,000 new won opportunities, 100 ms injected latency per call
   and a 600 requests/minute limit, with GitLab's per-endpoint limits on (search 30/min, note
   creation 300/min). The bound is (GitLab calls the run makes) / limit; the target is
   elapsed <= 1.15 x bound, with no 429.
3. Marker index at scale: 10,000 issues already synced into the project (state store lost), a few
   new wins. The index costs at most ceil(issues / 100) listing calls and trips no 429 (a search
   listing would meet search_rate_limit after 30 pages).

Run: .venv/bin/python bench/bench_opportunity_sync.py [--opportunities 2000] [--synced 10000]
     [--skip-throughput] [--skip-index]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT)]
HOME = Path(tempfile.mkdtemp(prefix="bench-sync-"))
os.environ.update(
    {
        "AIRFLOW_HOME": str(HOME),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_PS_STATE": f"sqlite:///{HOME / 'state.db'}",
    }
)

LIMIT_PER_MINUTE = 600
LATENCY_MS = 100


def salesforce_records(count: int) -> dict:
    stamp = "2026-10-01T12:00:00.000+0000"
    return {
        "RecordType": [{"Id": "012000000000001AAA", "Name": "Professional Services Only"}],
        "Account": [{"Id": "001000000000001AAA", "Name": "Benchmark Corp"}],
        "Product2": [{"Id": "01t000000000001AAA", "Name": "GitLab Basics", "ProductCode": "GL-BAS"}],
        "Opportunity": [
            {
                "Id": f"006000000{n:06d}AAA",
                "Name": f"Deal {n}",
                "AccountId": "001000000000001AAA",
                "RecordTypeId": "012000000000001AAA",
                "StageName": "Closed Won",
                "CloseDate": "2026-10-01",
                "Amount": 5000.0,
                "SystemModstamp": stamp,
            }
            for n in range(count)
        ],
        "OpportunityLineItem": [
            {
                "OpportunityId": f"006000000{n:06d}AAA",
                "Product2Id": "01t000000000001AAA",
                "Quantity": 1.0,
                "UnitPrice": 5000.0,
            }
            for n in range(count)
        ],
    }


def synced_issues(count: int) -> list[dict]:
    """Issues synced earlier (marker in the description) for opportunities the state store does not know."""
    return [
        {
            "project": "professional-services/engagements",
            "title": f"Earlier Corp: Deal {n}",
            "description": f"Engagement.\n\n<!-- ps-integrations:opportunity-id=006900000{n:06d}AAA -->",
            "labels": ["proposal::Closed_Won", "ps::todo"],
        }
        for n in range(count)
    ]


def run_sync(config: dict):
    from ps_integrations.domain.opportunity_sync import SyncConfig
    from ps_integrations.hooks.gitlab import GitLabHook
    from ps_integrations.hooks.salesforce import SalesforceHook
    from ps_integrations.jobs.opportunity_sync import OpportunitySync
    from ps_integrations.run_window import RunWindow
    from ps_integrations.state_store import StateStore
    from ps_integrations.stores.opportunity_sync import OpportunityLedger

    store = StateStore()
    store.apply_schema()
    ledger = OpportunityLedger(store, "bench", f"bench-{time.time()}")
    job = OpportunitySync(SalesforceHook(), GitLabHook(), ledger, SyncConfig.from_mapping(config))
    window = RunWindow(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC), "params")
    started = time.monotonic()
    summary = job.run(window)
    run_sync.job = job  # type: ignore[attr-defined]
    return time.monotonic() - started, summary


class Sandbox:
    """The stand-ins in their own process, as real Salesforce and GitLab are: the benchmark's CPU
    is the sync's, not the stand-ins'."""

    def __init__(self, seed: dict) -> None:
        import subprocess

        import requests

        self.requests = requests
        seed_file = HOME / "seed.json"
        seed_file.write_text(json.dumps(seed))
        state_dir = HOME / "sandbox"
        info_file = state_dir / "sandbox.json"
        info_file.unlink(missing_ok=True)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sandbox",
                "serve",
                "--seed",
                str(seed_file),
                "--state-dir",
                str(state_dir),
                "--ports",
                "admin=0",
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while not info_file.exists():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise SystemExit("the sandbox did not start")
            time.sleep(0.2)
        time.sleep(0.5)
        self.info = json.loads(info_file.read_text())
        for conn_id, definition in self.info["airflow_connections"].items():
            os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(definition)

    def admin(self, method: str, path: str, **kwargs) -> dict:
        response = self.requests.request(method, self.info["admin"] + path, timeout=30, **kwargs)
        response.raise_for_status()
        return response.json()

    def calls(self, system: str) -> dict:
        return self.admin("GET", f"/{system}/calls")

    def clear(self, system: str) -> None:
        self.admin("DELETE", f"/{system}/calls")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--opportunities", type=int, default=2000)
    parser.add_argument("--synced", type=int, default=10_000)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-index", action="store_true")
    args = parser.parse_args()

    from sandbox.seeds import load_seed_file

    seed = load_seed_file()
    users = seed["salesforce"]["users"]
    seed["salesforce"] = {"users": users, "records": salesforce_records(200)}
    sandbox = Sandbox(seed)
    config = {"writeback_field": "GitLab_Issue_URL__c", "gitlab_requests_per_minute": 100_000}
    try:
        print("== Call counts (200 new won opportunities, write-back on) ==")
        _elapsed, summary = run_sync(config)
        counts, sf_counts = sandbox.calls("gitlab"), sandbox.calls("salesforce")
        creates = counts.get("create_issue", 0)
        print(f"summary: {summary.line()}")
        print(f"GitLab calls: {counts}")
        print(f"Salesforce calls: {sf_counts}")
        print(f"GitLab writes per new opportunity: {creates / 200:.2f} (target 1)")
        print(
            f"Salesforce write-back calls: {sf_counts.get('update_collection', 0)} for 200 records (sObject collections, 200 per call)"
        )
        sandbox.clear("gitlab")
        sandbox.clear("salesforce")
        run_sync(config)
        writes = {
            k: v for k, v in sandbox.calls("gitlab").items() if k in ("create_issue", "update_issue", "create_note")
        }
        sf_queries = sum(v for k, v in sandbox.calls("salesforce").items() if k.startswith("query"))
        records_with_children = 200 * 2
        minimum = -(-records_with_children // 2000) + -(-200 // 200)
        print(
            f"nothing changed (a re-run of the window): GitLab writes {sum(writes.values())} (target 0), "
            f"Salesforce query calls {sf_queries} (minimum {minimum}: the window's query, plus one Id query per 200 "
            "opportunities it read before our write-back moved their SystemModstamp out of the window)"
        )

        if not args.skip_throughput:
            throughput(sandbox, seed, users, config, args.opportunities)
        if not args.skip_index:
            marker_index_at_scale(sandbox, seed, users, config, args.synced)
    finally:
        sandbox.stop()
    return 0


def throughput(sandbox: Sandbox, seed: dict, users: list, config: dict, count: int) -> None:
    print(
        f"\n== Throughput: {count} new won opportunities, {LATENCY_MS} ms latency, GitLab limit {LIMIT_PER_MINUTE}/min =="
    )
    seed["salesforce"] = {"users": users, "records": salesforce_records(count)}
    sandbox.admin("POST", "/seed", json=json.loads(json.dumps(seed, default=str)))
    (HOME / "state.db").unlink()
    sandbox.admin("PUT", "/gitlab/faults", json={"latency_ms": LATENCY_MS, "rate_limit_per_minute": LIMIT_PER_MINUTE})
    cpu = time.process_time()
    elapsed, summary = run_sync({**config, "gitlab_requests_per_minute": LIMIT_PER_MINUTE, "concurrency": 8})
    cpu = time.process_time() - cpu
    counts = sandbox.calls("gitlab")
    calls = sum(counts.values())
    limited = sandbox.admin("GET", "/gitlab/faults")["injected"].get("rate_limited", 0)
    limited += sum(sandbox.admin("GET", "/gitlab/state")["application_rate_limited"].values())
    bound = calls / LIMIT_PER_MINUTE * 60
    print(f"summary: {summary.line()}")
    print(f"GitLab calls: {counts} (total {calls}); 429 answers: {limited}; sync CPU {cpu:.1f} s")
    print(
        f"elapsed {elapsed:.1f} s; bound set by the limit {bound:.1f} s; "
        f"throughput ratio {elapsed / bound:.3f} (target <= 1.15)"
    )


def marker_index_at_scale(sandbox: Sandbox, seed: dict, users: list, config: dict, synced: int) -> None:
    new_wins = 20
    print(
        f"\n== Marker index: {synced} synced issues in the project, {new_wins} new wins, {LATENCY_MS} ms latency, "
        f"GitLab limit {LIMIT_PER_MINUTE}/min, search 30/min, notes 300/min =="
    )
    seed["salesforce"] = {"users": users, "records": salesforce_records(new_wins)}
    seed["gitlab"] = {**seed["gitlab"], "issues": [*(seed["gitlab"].get("issues") or []), *synced_issues(synced)]}
    sandbox.admin("POST", "/seed", json=json.loads(json.dumps(seed, default=str)))
    (HOME / "state.db").unlink(missing_ok=True)
    sandbox.admin("PUT", "/gitlab/faults", json={"latency_ms": LATENCY_MS, "rate_limit_per_minute": LIMIT_PER_MINUTE})
    state = sandbox.admin("GET", "/gitlab/state")
    project_id = next(
        p["id"] for p in state["projects"] if p["path_with_namespace"] == "professional-services/engagements"
    )
    issues = sum(1 for issue in state["issues"] if issue["project_id"] == project_id)
    sandbox.clear("gitlab")
    elapsed, summary = run_sync({**config, "gitlab_requests_per_minute": LIMIT_PER_MINUTE, "concurrency": 8})
    counts = sandbox.calls("gitlab")
    limited = sandbox.admin("GET", "/gitlab/faults")["injected"].get("rate_limited", 0)
    limited += sum(sandbox.admin("GET", "/gitlab/state")["application_rate_limited"].values())
    pages = run_sync.job.index_pages  # type: ignore[attr-defined]
    allowed = -(-issues // 100)
    print(f"summary: {summary.line()}")
    print(f"GitLab calls: {counts}; 429 answers: {limited}; elapsed {elapsed:.1f} s")
    print(
        f"marker index: {pages} listing calls for {issues} issues in the project "
        f"(target <= ceil(issues / 100) = {allowed}); index ratio {pages / allowed:.3f} (target <= 1.0); "
        f"search calls {0 if 'search' not in str(counts) else '?'}; 429: {limited} (target 0)"
    )


if __name__ == "__main__":
    raise SystemExit(main())
