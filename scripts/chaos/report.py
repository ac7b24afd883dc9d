"""The table per DAG and the failures with what replays them."""

from __future__ import annotations

from collections import Counter

from scripts.chaos.runner import SequenceOutcome
from scripts.chaos.schedule import FAULT_KINDS

COLUMNS = ("DAG", "seq", "runs", *FAULT_KINDS, "kills", "checks passed", "dup", "lost", "held", "s/seq", "CPU s/seq")


def print_table(
    outcomes: dict[str, list[SequenceOutcome]], references: dict[str, float], seed: int, seconds: float, cpu: float
) -> None:
    rows: list[tuple[str, ...]] = []
    totals: Counter[str] = Counter()
    for dag_id, found in outcomes.items():
        faults: Counter[str] = Counter()
        for outcome in found:
            faults.update(outcome.faults)
        checks = [check for outcome in found for check in outcome.verdict.checks]
        figures = {
            "runs": sum(outcome.runs for outcome in found),
            "kills": sum(outcome.kills for outcome in found),
            "dup": sum(outcome.verdict.duplicates for outcome in found),
            "lost": sum(outcome.verdict.lost for outcome in found),
            "held": sum(outcome.verdict.held_for_operator for outcome in found),
            "passed": sum(check.passed for check in checks),
            "checks": len(checks),
            "sequences": len(found),
        }
        totals.update(figures)
        totals.update(faults)
        per_sequence = sum(outcome.seconds for outcome in found) / max(len(found), 1)
        cpu_per_sequence = sum(outcome.cpu_seconds for outcome in found) / max(len(found), 1)
        rows.append(
            (
                dag_id,
                str(len(found)),
                str(figures["runs"]),
                *(str(faults.get(kind, 0)) for kind in FAULT_KINDS),
                str(figures["kills"]),
                f"{figures['passed']}/{figures['checks']}",
                str(figures["dup"]),
                str(figures["lost"]),
                str(figures["held"]),
                f"{per_sequence:.0f}",
                f"{cpu_per_sequence:.0f}",
            )
        )
    rows.append(
        (
            "total",
            str(totals["sequences"]),
            str(totals["runs"]),
            *(str(totals.get(kind, 0)) for kind in FAULT_KINDS),
            str(totals["kills"]),
            f"{totals['passed']}/{totals['checks']}",
            str(totals["dup"]),
            str(totals["lost"]),
            str(totals["held"]),
            "",
            "",
        )
    )
    widths = [max(len(row[index]) for row in [COLUMNS, *rows]) for index in range(len(COLUMNS))]
    line = "| " + " | ".join(name.ljust(width) for name, width in zip(COLUMNS, widths, strict=True)) + " |"
    print()
    print(line)
    print("|" + "|".join("-" * (width + 2) for width in widths) + "|")
    for row in rows:
        print("| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) + " |")
    print()
    print(
        f"seed {seed}: {totals['sequences']} sequences, {totals['runs']} runs, {totals['kills']} kills, "
        f"{totals['dup']} duplicates, {totals['lost']} lost; {totals['passed']}/{totals['checks']} invariant "
        f"checks passed; {seconds:.0f} s, CPU {cpu:.0f} s (references: "
        + ", ".join(f"{dag_id} {value:.0f} s" for dag_id, value in references.items())
        + ")"
    )


def print_failures(outcomes: dict[str, list[SequenceOutcome]], seed: int) -> int:
    failed = 0
    for dag_id, found in outcomes.items():
        for outcome in found:
            if outcome.verdict.passed:
                continue
            failed += 1
            print()
            print(f"FAILED {dag_id} sequence {outcome.number} (sequence seed {outcome.seed}); logs: {outcome.logs}")
            for check in outcome.verdict.failures():
                print(f"  invariant '{check.name}' broken: {check.detail}")
            print("  fault schedule:")
            for line in outcome.schedule.describe() if outcome.schedule else []:
                print(f"    {line}")
            print(f"  replay: make chaos SEED={seed} DAG={dag_id} ONLY={outcome.number}")
    return failed
