"""Sessions and tokens a stand-in hands out, with expiry on demand or after a TTL."""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass


@dataclass
class Session:
    token: str
    principal: str
    issued_at: float


class SessionRegistry:
    """Thread-safe registry of issued sessions.

    ``ttl_seconds`` (None = never) comes from the fault configuration; ``expire_all`` is the
    admin API's "session expiry" switch.
    """

    def __init__(self, prefix: str = "") -> None:
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}
        self._prefix = prefix
        self.ttl_seconds: float | None = None

    def issue(self, principal: str) -> str:
        token = self._prefix + secrets.token_urlsafe(24)
        with self._lock:
            self._sessions[token] = Session(token, principal, time.monotonic())
        return token

    def principal(self, token: str | None) -> str | None:
        """The principal of a live session, or None if unknown or expired."""
        if not token:
            return None
        with self._lock:
            session = self._sessions.get(token)
            if session is None:
                return None
            if self.ttl_seconds is not None and time.monotonic() - session.issued_at > self.ttl_seconds:
                del self._sessions[token]
                return None
            return session.principal

    def expire(self, token: str) -> None:
        with self._lock:
            self._sessions.pop(token, None)

    def expire_all(self) -> int:
        with self._lock:
            count = len(self._sessions)
            self._sessions.clear()
            return count

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)
