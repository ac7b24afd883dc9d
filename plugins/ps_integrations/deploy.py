"""Deployment helpers run by the compose file and the distributed test.

``python -m ps_integrations.deploy prepare-state-db [role]``: apply the state schema and give the
CSAT response service's database role access to the ``csat_*`` tables only (PostgreSQL).
"""

from __future__ import annotations

import os
import socket
import sys

CSAT_TABLES = ("csat_surveys", "csat_responses", "csat_optouts")


def worker_hostname() -> str:
    """``[core] hostname_callable`` for workers sharing a machine: ``PS_WORKER_HOSTNAME`` if set."""
    return os.environ.get("PS_WORKER_HOSTNAME") or socket.getfqdn()


def prepare_state_db(csat_role: str | None = None) -> list[str]:
    from sqlalchemy import text

    from ps_integrations.state_store import StateStore

    store = StateStore()
    applied = store.apply_schema()
    if csat_role and store.dialect == "postgresql":
        if not csat_role.isidentifier():
            raise SystemExit(f"not a role name: {csat_role!r}")
        with store.transaction() as connection:
            connection.execute(text(f"GRANT SELECT, INSERT, UPDATE ON {', '.join(CSAT_TABLES)} TO {csat_role}"))
    return applied


def main(argv: list[str]) -> int:
    if argv[:1] == ["prepare-state-db"]:
        applied = prepare_state_db(argv[1] if len(argv) > 1 else None)
        print(f"state database ready; schema applied now: {', '.join(applied) or 'nothing new'}")
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
