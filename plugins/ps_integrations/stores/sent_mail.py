"""At most one mail per version, also when the process is killed during the SMTP send.

The mail is claimed (``sending:<version>``) before the SMTP call and marked ``sent:<version>`` after
it. A claim found on the next try means the previous one died between the two: the server may or may
not have accepted the mail, and sending again could mail it twice. It is not sent again; the run says
so by name, for a person to check the mailbox (``MailState.INTERRUPTED``).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, Protocol


class JobValues(Protocol):
    """The state store's per-job key/value table."""

    def get_value(self, job: str, name: str) -> str | None: ...

    def set_value(self, job: str, name: str, value: str) -> None: ...

    def fetch_all(self, name: str, params: Any = None) -> list[dict[str, Any]]: ...


class MailState(enum.Enum):
    SENT = "sent"  # sent by this call
    ALREADY_SENT = "already sent"  # an earlier run sent this version
    INTERRUPTED = "interrupted"  # an earlier try died during the send: maybe delivered, never resent


class SentMailLedger:
    """Which version of a mail (e.g. the finance mail of one export) went out, per job and key."""

    def __init__(self, store: JobValues, job: str) -> None:
        self.store = store
        self.job = job

    def state(self, key: str, version: str) -> MailState | None:
        """What happened to ``version`` of mail ``key`` so far (None: never tried)."""
        recorded = self.store.get_value(self.job, key)
        if recorded in (f"sent:{version}", version):  # a bare version: recorded before the claim existed
            return MailState.ALREADY_SENT
        if recorded == f"sending:{version}":
            return MailState.INTERRUPTED
        return None

    def interrupted(self, prefix: str = "") -> list[str]:
        """Keys (starting with ``prefix``) whose last send was interrupted: a person must check the
        mailbox. Every run names them until a later version of the mail goes out."""
        rows = self.store.fetch_all("platform/values_like", {"job": self.job, "pattern": f"{prefix}%"})
        return [str(row["name"]) for row in rows if str(row["value"]).startswith("sending:")]

    def send_once(self, key: str, version: str, send: Callable[[], None]) -> MailState:
        """Send ``version`` of mail ``key`` unless it was sent or its send was interrupted.

        An exception from ``send`` (the server refused, the connection failed) releases the claim and
        propagates: nothing went out, so the next run sends it. A kill, a task timeout or a SIGTERM
        (``BaseException``s that are not ``Exception``s: ``AirflowTaskTimeout``, ``AirflowTaskTerminated``)
        keeps the claim: it may strike after the server accepted the mail, like a SIGKILL.
        """
        known = self.state(key, version)
        if known is not None:
            return known
        previous = self.store.get_value(self.job, key)
        self.store.set_value(self.job, key, f"sending:{version}")
        try:
            send()
        except Exception:
            self.store.set_value(self.job, key, previous or "")
            raise
        self.store.set_value(self.job, key, f"sent:{version}")
        return MailState.SENT
