"""``python -m scripts.chaos``: every DAG under seeded random faults and kills, invariants checked.

    make chaos                                  # >= 50 sequences over every DAG, a fresh seed
    make chaos SEED=1234 DAG=ps_opportunity_sync   # replay that DAG's sequences of seed 1234
    make chaos SEED=1234 DAG=ps_opportunity_sync ONLY=3   # ... only its sequence 3
    make chaos-ci                               # a few sequences per DAG, seed from the commit date

Exit code 0 when every invariant held in every sequence; 1 otherwise (each failure prints its seed,
fault schedule and the command that replays it).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import zlib
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scripts.chaos import environment

environment.prepare()  # before anything imports Airflow

from scripts.chaos.report import print_failures, print_table  # noqa: E402
from scripts.chaos.runner import HUNG_CHECK, Harness, SequenceOutcome, cpu_seconds  # noqa: E402
from scripts.chaos.schedule import draw_schedule  # noqa: E402
from scripts.chaos.targets import TARGETS  # noqa: E402


def sequence_seed(seed: int, dag_id: str, number: int) -> int:
    """The seed of one sequence: stable across machines and Python runs (no ``hash()``)."""
    return zlib.crc32(f"{seed}:{dag_id}:{number}".encode())


def commit_seed() -> int:
    """CI's seed: the commit date (seconds), so each commit explores other schedules, reproducibly."""
    output = subprocess.run(
        ["git", "log", "-1", "--format=%ct"], capture_output=True, text=True, check=False, cwd=environment.ROOT
    ).stdout.strip()
    return int(output) if output.isdigit() else 0


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make chaos", description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--seed", type=int, default=None, help="master seed (default: from the clock, printed)")
    parser.add_argument("--ci", action="store_true", help="seed from the commit date (unless --seed)")
    parser.add_argument("--dag", action="append", default=[], help="DAG(s) to run (default: all)")
    parser.add_argument("--sequences", type=int, default=50, help="sequences in total, spread over the DAGs")
    parser.add_argument("--per-dag", type=int, default=None, help="sequences per DAG (overrides --sequences)")
    parser.add_argument("--only", type=int, default=None, help="run only this sequence number of each DAG")
    parser.add_argument("--min-kills", type=int, default=0, help="fail unless at least this many kills happened")
    parser.add_argument(
        "--run-bound",
        type=float,
        default=None,
        help="seconds a DAG run may take before it counts as hung (default: 6x the step's reference run, >= 120)",
    )
    parser.add_argument("--work-dir", type=Path, default=environment.WORK_DIR)
    return parser.parse_args(argv)


def plan(args: argparse.Namespace, dag_ids: list[str]) -> dict[str, list[int]]:
    """The sequence numbers per DAG."""
    if args.only is not None:
        return {dag_id: [args.only] for dag_id in dag_ids}
    if args.per_dag is not None:
        return {dag_id: list(range(1, args.per_dag + 1)) for dag_id in dag_ids}
    counts = {dag_id: args.sequences // len(dag_ids) for dag_id in dag_ids}
    for dag_id in dag_ids[: args.sequences % len(dag_ids)]:
        counts[dag_id] += 1
    return {dag_id: list(range(1, count + 1)) for dag_id, count in counts.items()}


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    seed = args.seed if args.seed is not None else (commit_seed() if args.ci else int(time.time()))
    dag_ids = [name for item in args.dag for name in item.split(",") if name] or list(TARGETS)
    unknown = sorted(set(dag_ids) - set(TARGETS))
    if unknown:
        print(f"chaos: unknown DAG(s) {unknown}; known: {sorted(TARGETS)}", file=sys.stderr)
        return 2
    sequences = plan(args, dag_ids)
    print(f"chaos: seed {seed}; {sum(map(len, sequences.values()))} sequences over {', '.join(dag_ids)}", flush=True)
    started = time.monotonic()
    harness = Harness(args.work_dir, run_bound=args.run_bound)
    outcomes: dict[str, list[SequenceOutcome]] = {}
    references: dict[str, float] = {}
    try:
        harness.start(dag_ids)
        print(f"chaos: harness ready in {time.monotonic() - started:.0f} s", flush=True)
        for dag_id in dag_ids:
            target = TARGETS[dag_id]
            data_seed = seed % 100_000
            reference = harness.reference(target, data_seed)
            references[dag_id] = reference.seconds
            print(f"chaos: {dag_id}: reference run {reference.seconds:.0f} s", flush=True)
            for number in sequences[dag_id]:
                schedule = draw_schedule(sequence_seed(seed, dag_id, number), reference.profiles)
                outcome = harness.sequence(target, data_seed, schedule, reference)
                outcome.number = number
                outcomes.setdefault(dag_id, []).append(outcome)
                hung = any(check.name == HUNG_CHECK for check in outcome.verdict.failures())
                status = "ok" if outcome.verdict.passed else ("HUNG" if hung else "FAILED")
                print(
                    f"chaos: {dag_id} #{number}: {status} - {outcome.runs} runs, {outcome.kills} kills, "
                    f"{outcome.seconds:.0f} s",
                    flush=True,
                )
    finally:
        harness.stop()
    total = time.monotonic() - started
    print_table(outcomes, references, seed, total, cpu_seconds())
    # the machine is shared: wall times mean little without the load they were measured at
    print("chaos: load average at the end (1/5/15 min): " + " / ".join(f"{load:.2f}" for load in os.getloadavg()))
    failed = print_failures(outcomes, seed)
    kills = sum(outcome.kills for found in outcomes.values() for outcome in found)
    if kills < args.min_kills:
        print(f"chaos: only {kills} kills happened, {args.min_kills} required", file=sys.stderr)
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
