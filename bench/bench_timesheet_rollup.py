"""Benchmark (issue #8): the timesheet roll-up of 1,000,000 timelog rows (300 engineers, two years)
beyond the fetch - GraphQL nodes to entries, grouped per week, and every week's export files
(approved hours rounded per engineer, day and engagement under the rules' policy (#20), utilization,
engagement progress, findings) built, with the manifest's rounding check.
Targets: under 10 s CPU, under 1.5 GB peak beyond the fetch; GraphQL requests = ceil(rows / 100).
Since #16 the hook hands the job typed timelog records, not GraphQL dicts: the conversion is part of
the fetch and printed on its own line, and the roll-up figures start from the records.

The request count is measured through the real hook against the GitLab stand-in (its seeded two
years of timelogs), in a subprocess as real GitLab would be.

Run: .venv/bin/python bench/bench_timesheet_rollup.py [--rows 1000000] [--repeats 3] [--skip-fetch]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT)]
HOME = Path(tempfile.mkdtemp(prefix="bench-timesheets-"))
os.environ.update({"AIRFLOW_HOME": str(HOME), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"})

ENGAGEMENTS = 500
ENGINEERS = 300


def nodes(rows: int, engineers: int = ENGINEERS) -> list[dict]:
    rng = random.Random(1)
    start = datetime(2024, 11, 1, tzinfo=UTC)
    span = 730 * 86400
    epics = ["PS Internal", "Internal Assisted", "Global Company Meetings", "PTO/Holidays"]
    out = []
    for number in range(rows):
        engagement = rng.random() < 0.7
        out.append(
            {
                "id": f"gid://gitlab/Timelog/{number}",
                "spentAt": (start + timedelta(seconds=rng.randrange(span))).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "timeSpent": rng.choice([900, 1800, 3600, 7200, 360, -900]),
                "user": {"username": f"engineer{number % engineers}"},
                "issue": {
                    "id": f"gid://gitlab/Issue/{number % ENGAGEMENTS}",
                    "webUrl": f"https://gitlab.example/ps/engagements/-/issues/{number % ENGAGEMENTS}",
                    "state": "opened",
                    "epic": None if engagement else {"title": rng.choice(epics)},
                },
                "project": {
                    "fullPath": "professional-services/engagements"
                    if engagement
                    else "professional-services/time-tracking"
                },
            }
        )
    return out


def records(data: list[dict]) -> list:
    """GraphQL nodes -> the hook's timelog records (what ``GitLabHook.list_timelogs`` returns, built
    page by page during the fetch)."""
    from ps_integrations.hooks.gitlab import timelog_records
    from ps_integrations.jobs.timesheets import collector_paused

    with collector_paused():  # as in the job: the fetch runs inside run()
        return list(timelog_records(data))


def rollup(data: list) -> tuple[int, int]:
    """Everything the DAG does between the fetch and the write: returns (weeks, bytes built)."""
    from ps_integrations.jobs.timesheets import collector_paused

    with collector_paused():
        return _rollup(data)


def _rollup(timelogs: list) -> tuple[int, int]:
    from ps_integrations.domain.timesheet_entries import to_entries
    from ps_integrations.domain.timesheet_export import EngagementInfo, period_export
    from ps_integrations.domain.timesheets import group_by_period
    from ps_integrations.jobs.timesheets import load_rules

    rules = load_rules()
    roles = {f"engineer{n}": ("engineer", "technical_architect", "trainer")[n % 3] for n in range(ENGINEERS)}
    directory = {
        f"https://gitlab.example/ps/engagements/-/issues/{n}": EngagementInfo(
            f"https://gitlab.example/ps/engagements/-/issues/{n}",
            f"006000000{n:06d}AAA",
            f"Customer {n}",
            "GL-IMPL-QS",
            Decimal(400),
            time_and_materials=n % 5 == 0,
            budget_source="sku_table",
        )
        for n in range(ENGAGEMENTS)
    }
    entries, _findings = to_entries(
        timelogs,
        "Europe/Berlin",
        "professional-services/engagements",
        date(2024, 1, 1),
        date(2027, 1, 1),
        date(2027, 1, 1),
    )
    by_week = group_by_period(entries, "week")
    before: dict = defaultdict(int)  # seconds of billable time exported for earlier weeks
    built = 0
    for week in sorted(by_week):
        export = period_export(
            week, by_week[week], roles, directory, {url: Decimal(s) / 3600 for url, s in before.items()}, [], rules
        )
        assert export.rounding_within_bounds
        built += sum(len(f.content) for f in export.files)
        for entry in by_week[week]:
            if entry.category == "Project Work":
                before[entry.engagement] += entry.seconds
    return len(by_week), built


def measure_fetch() -> None:
    """GraphQL requests for the seeded two years, through the real hook against the stand-in."""
    from sandbox.seeds import load_seed_file

    seed_file = HOME / "seed.json"
    seed_file.write_text(json.dumps({"gitlab": load_seed_file()["gitlab"]}))
    state_dir = HOME / "sandbox"
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "serve", "--seed", str(seed_file), "--state-dir", str(state_dir)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        info_file = state_dir / "sandbox.json"
        for _ in range(600):
            if info_file.exists():
                break
            time.sleep(0.1)
        connection = json.loads(info_file.read_text())["airflow_connections"]["gitlab_default"]
        os.environ["AIRFLOW_CONN_GITLAB_DEFAULT"] = json.dumps(connection)
        from ps_integrations.hooks.gitlab import GitLabHook
        from ps_integrations.jobs.timesheets.reads import query_range

        hook = GitLabHook()
        group = hook.group_gid("professional-services")
        started = time.monotonic()
        listing = hook.list_timelogs(group, *query_range(date(2024, 11, 2), date(2026, 10, 31)))
        elapsed = time.monotonic() - started
        fetched = listing.timelogs
        expected = math.ceil((len(fetched) + listing.duplicates) / 100)
        print(
            f"fetch: {len(fetched)} timelogs in {listing.pages} GraphQL requests "
            f"(ceil(rows / 100) = {expected}; ratio {listing.pages / expected:.2f}); {elapsed:.1f} s wall"
        )
    finally:
        process.terminate()
        process.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-fetch", action="store_true")
    args = parser.parse_args()
    data = nodes(args.rows)
    print(f"== Timesheet roll-up of {len(data)} timelog rows ({ENGINEERS} engineers, two years) ==")
    records(data[:1])  # imports (the hook module loads Airflow) outside the measurement
    started = time.process_time()
    fetched = records(data)
    parse = time.process_time() - started
    print(f"hook: GraphQL nodes -> timelog records, CPU {parse:.2f} s (part of the fetch, page by page)")
    del data
    times = []
    for _ in range(args.repeats):
        started = time.process_time()
        weeks, built = rollup(fetched)
        times.append(time.process_time() - started)
    cpu = statistics.median(times)
    print(f"weeks exported: {weeks}; export bytes built: {built / 1e6:.1f} MB")
    print(
        f"CPU median of {args.repeats}: {cpu:.2f} s (runs: {', '.join(f'{t:.2f}' for t in times)}); target < 10 s; ratio {cpu / 10:.2f}"
    )
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tracemalloc.start()
    rollup(fetched[: len(fetched) // 10])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"peak traced memory beyond the fetch for a tenth of the rows: {peak / 1e6:.0f} MB "
        f"(x10 estimate {peak / 1e5:.0f} MB; target < 1500 MB; ratio {peak / 1e5 / 1500:.2f})"
    )
    print(f"process max RSS: {rss_before:.0f} MB (includes the 1M generated input nodes and their records)")
    print(f"CPU roll-up + the hook's record conversion: {cpu + parse:.2f} s")
    if not args.skip_fetch:
        measure_fetch()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
