"""The CSAT limiter's single-process storage never keeps the interpreter alive (issue #15)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import threading

import pytest

from ps_integrations.csat_service.limiter import LimitSettings, RequestLimits, SingleProcessStorage


def test_memory_storage_counts_and_leaves_only_daemon_threads_behind():
    limits = RequestLimits(LimitSettings(storage_uri="memory://", views_per_client="2/minute"))
    assert isinstance(limits.storage, SingleProcessStorage)
    assert [limits.view("203.0.113.7") for _ in range(3)] == [True, True, False]
    assert limits.view("203.0.113.8") is True  # another client has its own budget
    sweepers = [thread for thread in threading.enumerate() if isinstance(thread, threading.Timer)]
    assert sweepers and all(thread.daemon for thread in sweepers)


@pytest.mark.skipif(shutil.which("faketime") is None, reason="faketime is installed by make test")
def test_a_process_using_the_limiter_exits_under_faketime():
    script = textwrap.dedent(
        """
        from ps_integrations.csat_service.limiter import LimitSettings, RequestLimits
        limits = RequestLimits(LimitSettings())
        assert limits.view("client") and limits.answer("survey")
        print("counted")
        """
    )
    finished = subprocess.run(
        ["faketime", "-f", "+455d", sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.strip() == "counted"
