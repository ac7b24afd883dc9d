"""Watching one DAG run in its forked child: the schedule's SIGKILL, and the bound past which it hangs.

A hung run is not left to stall the harness: SIGUSR1 first (the child registered ``faulthandler`` for
it, so every thread's stack goes into the run's log), then SIGKILL, and the sequence fails naming
where it hung (``hang_detail``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from scripts.chaos import environment

HUNG_CHECK = "every run ends within its time bound"
HARNESS_DUMP_HEADER = "--- the harness's threads (the sandbox's stand-ins) when the hung run was killed ---"
POLL_SECONDS = 0.02
STACK_DUMP_SECONDS = 1.0  # for the hung child to write its stacks before the SIGKILL
# a thread waiting here waits for another thread: the other one is where the run hangs
WAITING_FOR_ANOTHER_THREAD = ("/threading.py", "/concurrent/futures/", "/queue.py")

Frame = tuple[str, str, str]  # path, line, function


def kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it ended by itself meanwhile
        os.killpg(pid, signal.SIGKILL)


def watch(
    pid: int, started: float, bound: float, kill_due: Callable[[float], bool] | None = None
) -> tuple[int, bool, bool]:
    """Wait for the run in process ``pid`` (the leader of its own process group); SIGKILL it when
    ``kill_due(elapsed)`` says so; past ``bound`` seconds after ``started`` it hangs.

    :return: (wait status, killed by the schedule, hung).
    """
    killed = hung = False
    while True:
        finished, status = os.waitpid(pid, os.WNOHANG)
        if finished:
            return status, killed, hung
        elapsed = time.monotonic() - started
        if killed or hung:
            pass  # the SIGKILL is on its way
        elif kill_due is not None and kill_due(elapsed):
            kill_group(pid)
            killed = True
        elif elapsed > bound:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGUSR1)
                time.sleep(STACK_DUMP_SECONDS)
            kill_group(pid)
            hung = True
        time.sleep(POLL_SECONDS)


def hang_detail(log: Path, bound: float) -> str:
    """What a hung run was doing, from the stacks its child dumped into ``log``."""
    where = hung_frames(log.read_text(errors="replace") if log.exists() else "")
    return f"still running after {bound:.0f} s, killed; stack: {where or 'not dumped'}; log {log}"


def hung_frames(log_text: str, own: int = 4) -> str:
    """The hung thread's innermost frame and up to ``own`` frames of the project's code, innermost first.

    The hung thread is, of the last dump's threads running project code, the first not just waiting
    for another thread (a job waiting on its worker pool hangs in the worker); the harness's own
    frames (``scripts/chaos/``) and whatever called them are left out.
    """
    threads = _last_dump(log_text.split(HARNESS_DUMP_HEADER, 1)[0])
    root = str(environment.ROOT) + "/"
    candidates = []
    for frames in threads:
        harness = next((i for i, frame in enumerate(frames) if "/scripts/chaos/" in frame[0]), len(frames))
        frames = frames[:harness]
        project = [frame for frame in frames if frame[0].startswith(root) and "/.venv/" not in frame[0]]
        if project:
            waiting = any(part in frames[0][0] for part in WAITING_FOR_ANOTHER_THREAD)
            candidates.append((waiting, frames, project))
    if not candidates:  # no project code on any stack: the current thread's innermost frame
        return " <- ".join(f"{name} ({path}:{line})" for path, line, name in threads[0][:1]) if threads else ""
    _, frames, project = min(candidates, key=lambda candidate: candidate[0])  # stable: dump order otherwise
    picked = [frames[0], *[frame for frame in project[:own] if frame != frames[0]]]
    return " <- ".join(f"{name} ({path.removeprefix(root)}:{line})" for path, line, name in picked)


def _last_dump(text: str) -> list[list[Frame]]:
    """The threads of the last ``faulthandler`` dump in ``text``, current thread first."""
    dumps: list[list[list[Frame]]] = []
    threads: list[list[Frame]] = []
    current: list[Frame] | None = None
    for line in text.splitlines():
        if line.startswith("Thread 0x"):
            current = []
            threads.append(current)
        elif line.startswith("Current thread 0x"):  # written last: the dump ends with it
            current = []
            dumps.append([current, *threads])
            threads = []
        elif line.startswith("  File ") and current is not None:
            path, _, rest = line.strip().removeprefix("File ").partition(", line ")
            number, _, name = rest.partition(" in ")
            current.append((path.strip('"'), number, name))
        elif line.strip():  # a log line: no dump goes on here
            current, threads = None, []
    return dumps[-1] if dumps else []
