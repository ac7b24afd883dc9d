"""Benchmark (issue #8, first figures): the roll-up of 1,000,000 timelog rows (300 engineers, two
years) from fetched GraphQL nodes to per-engineer/week totals and utilization, beyond the fetch.
Target: under 10 s CPU and 1.5 GB peak. The export step is not built yet; this measures the
domain core so the next step can choose its data structures.

Run: .venv/bin/python bench/bench_timesheet_rollup.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import time
import tracemalloc
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT)]


def nodes(rows: int, engineers: int = 300) -> list[dict]:
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
                    "webUrl": f"https://gitlab.example/ps/engagements/-/issues/{number % 500}",
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


def rollup(data: list[dict]) -> int:
    from ps_integrations.domain.timesheets import period_of, totals, utilization
    from ps_integrations.jobs.timesheets import to_entries

    entries, _findings = to_entries(
        data, "Europe/Berlin", "professional-services/engagements", date(2024, 1, 1), date(2027, 1, 1), date(2027, 1, 1)
    )
    by_week: dict[str, list] = defaultdict(list)
    for entry in entries:
        by_week[period_of(entry.day).key].append(entry)
    results = 0
    for key, week_entries in by_week.items():
        week = period_of(week_entries[0].day)
        summed = totals(week_entries)
        for engineer, hours in summed.billable.items():
            utilization(engineer, "engineer", hours, summed.pto.get(engineer, Decimal(0)), week)
            results += 1
        del key
    return results


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    data = nodes(args.rows)
    print(f"== Roll-up of {len(data)} timelog rows (300 engineers, two years) ==")
    started = time.process_time()
    results = rollup(data)
    cpu = time.process_time() - started
    print(f"engineer-weeks computed: {results}")
    print(f"CPU {cpu:.1f} s; target < 10 s; ratio {cpu / 10:.2f}")
    tracemalloc.start()
    rollup(data[: len(data) // 10])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"peak traced memory for a tenth of the rows: {peak / 1e6:.0f} MB (x10 estimate {peak / 1e5:.0f} MB; target < 1500 MB)"
    )
    print(
        f"process max RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB (includes the generated input)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
