"""Runs one chaos sequence of the opportunity sync twice - on this build and on a deliberately broken
one (the marker lookup that finds an issue created before a crash is skipped) - then a sequence on a
build whose GitLab issue creation never returns (a hang: the run must end as a named failure at the
harness's run bound, not stall the harness), and prints the verdicts as JSON.
``tests/chaos/test_harness.py`` runs it in its own process: the harness forks every DAG run, and the
children inherit the break.

    python -m tests.chaos.broken_build
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import time
from typing import Any

from scripts.chaos import environment

environment.prepare()

from scripts.chaos.report import print_failures  # noqa: E402
from scripts.chaos.runner import Harness  # noqa: E402
from scripts.chaos.schedule import Attempt, Kill, Schedule, StepSchedule  # noqa: E402
from scripts.chaos.targets import OPPORTUNITY_SYNC  # noqa: E402

DATA_SEED = 5
# Step 1: the task process dies while GitLab holds its answer to the second issue created (the issue
# exists, the state store still says "creating"); the retry must find it by its marker.
CRASH_AFTER_CREATE = Schedule(
    seed=0,
    steps=(
        StepSchedule((Attempt(kill=Kill("held", "gitlab", "create_issue", after=1)),)),
        StepSchedule((Attempt(),)),
    ),
)

NO_FAULTS = Schedule(seed=0, steps=(StepSchedule((Attempt(),)), StepSchedule((Attempt(),))))
HANG_BOUND_SECONDS = 30.0  # a run of the sync takes ~10 s here


def hang_forever(*_args: Any, **_kwargs: Any) -> None:
    time.sleep(3600)


def main() -> int:
    from ps_integrations.hooks.gitlab import GitLabHook
    from ps_integrations.jobs.opportunity_sync import OpportunitySync

    harness = Harness(environment.WORK_DIR)
    verdicts = {}
    try:
        harness.start([OPPORTUNITY_SYNC.dag_id])
        reference = harness.reference(OPPORTUNITY_SYNC, DATA_SEED)
        for build in ("intact", "broken"):
            if build == "broken":
                OpportunitySync.marker_index = lambda self: {}  # type: ignore[method-assign]
            outcome = harness.sequence(OPPORTUNITY_SYNC, DATA_SEED, CRASH_AFTER_CREATE, reference)
            verdicts[build] = {
                "kills": outcome.kills,
                "duplicates": outcome.verdict.duplicates,
                "lost": outcome.verdict.lost,
                "failed": {check.name: check.detail for check in outcome.verdict.failures()},
            }
        GitLabHook.create_issue = hang_forever  # type: ignore[assignment,method-assign]
        harness.run_bound = HANG_BOUND_SECONDS
        started = time.monotonic()
        outcome = harness.sequence(OPPORTUNITY_SYNC, DATA_SEED, NO_FAULTS, reference)
        outcome.number = 1
        report = io.StringIO()
        with contextlib.redirect_stdout(report):
            print_failures({OPPORTUNITY_SYNC.dag_id: [outcome]}, seed=DATA_SEED)
        verdicts["hung"] = {
            "seconds": time.monotonic() - started,
            "runs": outcome.runs,
            "failed": {check.name: check.detail for check in outcome.verdict.failures()},
            "report": report.getvalue(),
        }
    finally:
        harness.stop()
    print("VERDICTS " + json.dumps(verdicts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
