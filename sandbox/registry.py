"""The HTTP stand-ins the sandbox serves. Each system's package adds its class here."""

from __future__ import annotations

from sandbox.core.standin import StandIn
from sandbox.gitlab.standin import GitLabStandIn
from sandbox.salesforce.standin import SalesforceStandIn
from sandbox.zuora.standin import ZuoraStandIn

STANDIN_CLASSES: list[type[StandIn]] = [SalesforceStandIn, GitLabStandIn, ZuoraStandIn]
