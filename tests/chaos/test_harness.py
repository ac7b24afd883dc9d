"""The chaos harness itself: reproducible schedules, invariants that catch what they name, and a
deliberately broken build caught by a real sequence."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import replace

import pytest

from scripts.chaos.invariants import Check, EndState, Verdict, check
from scripts.chaos.report import print_failures
from scripts.chaos.runner import SequenceOutcome
from scripts.chaos.schedule import (
    MAX_ATTEMPTS,
    WRITE_OPERATIONS,
    Attempt,
    Fault,
    Schedule,
    StepProfile,
    StepSchedule,
    draw_schedule,
)
from scripts.chaos.targets import TARGETS
from scripts.chaos.watch import HUNG_CHECK, hang_detail, watch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROFILE = StepProfile(
    calls={
        "salesforce": {"soap_login": 1, "query_all": 2, "update_collection": 1},
        "gitlab": {"list_project_issues": 3, "create_issue": 12, "create_note": 0},
        "zuora": {},
    },
    seconds=8.0,
    mails=2,
)


def test_the_same_seed_gives_the_same_schedule_and_another_seed_another():
    first = draw_schedule(1234, [PROFILE, PROFILE])
    assert first == draw_schedule(1234, [PROFILE, PROFILE])
    assert first.describe() == draw_schedule(1234, [PROFILE, PROFILE]).describe()
    assert any(draw_schedule(seed, [PROFILE]).describe() != first.describe()[:MAX_ATTEMPTS] for seed in range(5))


def test_faults_hit_only_endpoints_the_reference_called_and_kills_hold_writes():
    endpoints = {(system, name) for system, calls in PROFILE.calls.items() for name, count in calls.items() if count}
    kinds: Counter[str] = Counter()
    kills: Counter[str] = Counter()
    for seed in range(300):
        for step in draw_schedule(seed, [PROFILE]).steps:
            assert len(step.attempts) == MAX_ATTEMPTS
            for attempt in step.attempts:
                for fault in attempt.faults:
                    kinds[fault.kind] += 1
                    if fault.kind != "smtp_delay":
                        assert (fault.system, fault.endpoint) in endpoints
                        assert fault.after < PROFILE.calls[fault.system][fault.endpoint]
                    if fault.kind == "session_expired":
                        assert fault.system in ("salesforce", "zuora")
                    if fault.kind == "answer_lost":  # only writes: a lost answer to a read is a server_error
                        assert fault.endpoint in WRITE_OPERATIONS[fault.system] and fault.status in (500, 502, 503, 504)
                if attempt.kill is not None:
                    kills[attempt.kill.mode] += 1
                    if attempt.kill.mode == "held" and attempt.kill.system != "smtp":
                        assert attempt.kill.endpoint in WRITE_OPERATIONS[attempt.kill.system]
                    if attempt.kill.mode == "timed":
                        assert 0 < attempt.kill.at_seconds < PROFILE.seconds
    assert set(kinds) == {
        "rate_limited",
        "server_error",
        "latency_spike",
        "session_expired",
        "smtp_delay",
        "answer_lost",
    }
    assert kills["held"] > kills["timed"] > 0


REFERENCE = EndState(
    issues={"opportunity 006A": [("A", ("ps::todo",), "opened", "d", None)]},
    notes={"opportunity 006A": ["Amount changed"]},
    writebacks={"006A": "opportunity 006A"},
    filings=Counter({("006A", "file Cost-vs-actual A v1"): 1, ("006A", "post Cost-vs-actual analysis for A"): 1}),
    mails=Counter({("a@example.com", "Survey"): 1}),
    exports={"x/report.csv": "abc"},
    records={"006A": ("006A", ("synced", 1))},
    in_flight={},
    summary="read 1, created 1, failed 0",
    clean_run_succeeded=True,
)


def failed(actual: EndState) -> set[str]:
    return {item.name for item in check(REFERENCE, actual).failures()}


def test_the_reference_against_itself_passes_every_check():
    verdict = check(REFERENCE, REFERENCE)
    assert verdict.passed and verdict.duplicates == 0 and verdict.lost == 0
    assert len(verdict.checks) == 14


@pytest.mark.parametrize(
    ("change", "broken", "duplicates", "lost"),
    [
        ({"issues": {"opportunity 006A": REFERENCE.issues["opportunity 006A"] * 2}}, {"one issue per record"}, 1, 0),
        ({"issues": {}, "notes": {}}, {"no lost or extra issue", "one note per real change"}, 0, 2),
        ({"notes": {"opportunity 006A": ["Amount changed"] * 2}}, {"one note per real change"}, 1, 0),
        ({"writebacks": {}}, {"every write-back done"}, 0, 1),
        (
            {"filings": REFERENCE.filings + Counter({("006A", "post Cost-vs-actual analysis for A"): 1})},
            {"one Salesforce file and post per close"},
            1,
            0,
        ),
        ({"filings": Counter()}, {"no lost Salesforce file or post"}, 0, 2),
        (
            {"mails": Counter({("a@example.com", "Survey"): 2})},
            {"one mail per version", "no second survey or mail to anyone"},
            1,
            0,
        ),
        ({"mails": Counter()}, {"no lost mail"}, 0, 1),
        ({"exports": {"x/report.csv": "abd"}}, {"exports byte-identical"}, 0, 0),
        ({"records": {}}, {"no lost or extra record"}, 0, 1),
        ({"records": {"006A": ("another-id", ("synced", 1))}}, set(), 0, 0),  # ids drawn per run
        ({"records": {"006A": ("006A", ("failed", 1))}}, {"no lost or extra record"}, 0, 0),
        (
            {"records": {"006A": ("006A", ("creating", None))}, "in_flight": {"006A": "006A"}},
            {"nothing in flight without a named reason"},
            0,
            0,
        ),
        ({"clean_run_succeeded": False}, {"clean run succeeds (or names what it holds)"}, 0, 0),
    ],
)
def test_each_invariant_catches_what_it_names(change, broken, duplicates, lost):
    actual = replace(REFERENCE, **change)
    verdict = check(REFERENCE, actual)
    assert {item.name for item in verdict.failures()} == broken
    assert (verdict.duplicates, verdict.lost) == (duplicates, lost)


def test_a_send_interrupted_and_named_in_the_summary_is_held_for_the_operator_not_lost():
    actual = replace(
        REFERENCE,
        mails=Counter(),
        in_flight={"s1": "survey-1"},
        records={"006A": ("survey-1", ("sending", ""))},
        summary="failed 1: survey survey-1 was interrupted while sending",
        clean_run_succeeded=False,
    )
    verdict = check(REFERENCE, replace(actual, records=REFERENCE.records))
    assert verdict.passed and verdict.held_for_operator == 1 and verdict.lost == 0


@pytest.mark.airflow
@pytest.mark.chaos_sequence
@pytest.mark.timeout(1500)  # the harness starts Airflow once, then ~10 DAG runs
def test_a_build_that_skips_the_marker_lookup_is_caught_with_the_duplicate_it_makes(tmp_path):
    """One real sequence (SIGKILL while GitLab holds its answer to a created issue), on this build and
    with the opportunity sync's marker lookup patched away: only the broken build duplicates."""
    environment = {**os.environ, "PS_CHAOS_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "tests.chaos.broken_build"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("VERDICTS ")]
    assert result.returncode == 0 and lines, result.stdout[-3000:] + result.stderr[-3000:]
    verdicts = json.loads(lines[-1].removeprefix("VERDICTS "))
    intact, broken = verdicts["intact"], verdicts["broken"]
    assert intact["kills"] == broken["kills"] == 1
    assert "one issue per record" not in intact["failed"]
    assert "one issue per record" in broken["failed"] and broken["duplicates"] >= 1
    assert "a second issue for: opportunity 006" in broken["failed"]["one issue per record"]
    # a run that never ends is killed at the bound and named, with where it hung and how to replay it
    hung = verdicts["hung"]
    assert list(hung["failed"]) == [HUNG_CHECK] and hung["runs"] == 1
    assert hung["seconds"] < 30 + 30  # the bound, then the harness moves on
    detail = hung["failed"][HUNG_CHECK]
    assert detail.startswith("step 1 attempt 1: still running after 30 s, killed; stack: hang_forever (")
    assert "plugins/ps_integrations/jobs/opportunity_sync/" in detail  # the job's frames that called it
    report = hung["report"]
    assert "FAILED ps_opportunity_sync sequence 1 (sequence seed 0)" in report
    assert "step 1 attempt 1: no faults" in report and "hang_forever (tests/chaos/broken_build.py:" in report
    assert "replay: make chaos SEED=5 DAG=ps_opportunity_sync ONLY=1" in report


@pytest.mark.parametrize("dag_id", sorted(TARGETS))
def test_every_targets_state_rows_apply_to_a_fresh_state_store(dag_id, tmp_path):
    """A target's seeded rows follow the SQL as it is now (a renamed query or a new column breaks them)."""
    from sqlalchemy import create_engine

    from ps_integrations.state_store import StateStore

    store = StateStore(engine=create_engine(f"sqlite:///{tmp_path / 'state.db'}"))
    store.apply_schema()
    for query, binds in TARGETS[dag_id].state_rows:
        store.execute(query, dict(binds))
    for spec in TARGETS[dag_id].records:
        with store.engine.connect() as connection:
            connection.exec_driver_sql(spec.sql)


# --- a run that never ends (#23: a roll-up sequence hung for minutes and stalled the whole harness) ---
STUCK_RUN = """
import faulthandler, signal, time
faulthandler.register(signal.SIGUSR1, all_threads=True)
print("ready", flush=True)
def wait_for_an_answer_that_never_comes():
    time.sleep(600)
wait_for_an_answer_that_never_comes()
"""


def start_stuck_run(log):
    """A process like the harness's DAG-run child: its own process group, stacks on SIGUSR1 into its log."""
    with log.open("w") as handle:
        child = subprocess.Popen(
            [sys.executable, "-c", STUCK_RUN], stdout=handle, stderr=handle, start_new_session=True
        )
    deadline = time.monotonic() + 60
    while "ready" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)  # faulthandler registered before any SIGUSR1 (its default action ends the process)
    return child


def test_a_run_past_its_bound_is_killed_after_its_stacks_are_dumped(tmp_path):
    log = tmp_path / "step1-attempt1.log"
    child = start_stuck_run(log)
    started = time.monotonic()

    status, killed, hung = watch(child.pid, started, bound=2.0)

    assert hung and not killed
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert 2.0 <= time.monotonic() - started < 10
    detail = hang_detail(log, 2.0)
    assert detail.startswith("still running after 2 s, killed; stack: wait_for_an_answer_that_never_comes (<string>:6)")
    assert detail.endswith(f"log {log}")


def test_a_scheduled_kill_before_the_bound_is_a_kill_not_a_hang(tmp_path):
    child = start_stuck_run(tmp_path / "run.log")
    status, killed, hung = watch(child.pid, time.monotonic(), bound=30.0, kill_due=lambda elapsed: elapsed > 0.2)
    assert killed and not hung and os.WTERMSIG(status) == signal.SIGKILL


def test_a_hung_sequence_is_reported_with_seed_schedule_stack_and_replay(capsys):
    schedule = Schedule(
        2876102110,
        (
            StepSchedule(
                (
                    Attempt((Fault("server_error", "gitlab", "project_upload", status=502),)),
                    Attempt((Fault("rate_limited", "gitlab", "project_upload", status=429),)),
                )
            ),
        ),
    )
    detail = "step 1 attempt 2: still running after 120 s, killed; stack: read (ssl.py:1167) <- upload_file (...)"
    outcome = SequenceOutcome(
        "ps_timesheet_rollup", schedule.seed, schedule, Verdict([Check(HUNG_CHECK, False, detail)])
    )
    outcome.number = 3

    assert print_failures({"ps_timesheet_rollup": [outcome]}, seed=1764610000) == 1

    printed = capsys.readouterr().out
    assert "FAILED ps_timesheet_rollup sequence 3 (sequence seed 2876102110)" in printed
    assert f"invariant '{HUNG_CHECK}' broken: {detail}" in printed
    assert "step 1 attempt 1: server_error@gitlab.project_upload(status=502)" in printed
    assert "step 1 attempt 2: rate_limited@gitlab.project_upload(status=429)" in printed
    assert "replay: make chaos SEED=1764610000 DAG=ps_timesheet_rollup ONLY=3" in printed


def test_upload_links_compare_without_their_random_secret():
    """Real GitLab names an upload /uploads/<32 random hex>/<file>: a file uploaded again (after a
    failed issue create) gets another link, which is not a different issue."""
    from scripts.chaos.invariants import _without_upload_secrets

    first = "Spreadsheet: [t.xlsx](/uploads/0123456789abcdef0123456789abcdef/t.xlsx)"
    again = "Spreadsheet: [t.xlsx](/uploads/fedcba9876543210fedcba9876543210/t.xlsx)"
    assert _without_upload_secrets(first) == _without_upload_secrets(again) != _without_upload_secrets("[t.xlsx]")
