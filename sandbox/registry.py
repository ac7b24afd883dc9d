"""The HTTP stand-ins the sandbox serves. Each system's package adds its class here."""

from __future__ import annotations

from sandbox.core.standin import StandIn

STANDIN_CLASSES: list[type[StandIn]] = []
