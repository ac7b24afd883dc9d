"""Run the CSAT response service: ``python -m ps_integrations.csat_service``.

Configuration (environment):

- ``PS_CSAT_DATABASE_URL``: SQLAlchemy URL of the state database (a role limited to ``csat_*``);
- ``PS_CSAT_SECRET_KEY`` or ``PS_CSAT_SECRET_KEY_FILE``: the token signing secret, the same as the
  password of the Airflow connection ``ps_csat``;
- ``PS_CSAT_EARLIER_SECRET_KEYS`` (comma-separated, optional): secrets used before a rotation; links
  signed with them keep working (unsubscribe links never expire), only the current one signs;
- ``PS_CSAT_RATE_LIMIT_STORAGE``: where the rate-limit counters live, a ``limits`` storage URI:
  ``redis://:password@redis:6379/1`` shares them between every process of the service;
  ``memory://`` (the default) is right only for a single process;
- ``PS_CSAT_HOST`` (127.0.0.1), ``PS_CSAT_PORT`` (8090), ``PS_CSAT_INSECURE_COOKIES`` (set to 1
  only for plain-HTTP local runs);
- ``FORWARDED_ALLOW_IPS`` (uvicorn's; 127.0.0.1): the address of the TLS proxy in front, whose
  ``X-Forwarded-For`` names the client. The per-client rate limits need it: without it every
  customer looks like the proxy.

How long survey links work is not set here: each link carries its expiry, set by the survey job's
``token_days`` (``ps_csat_surveys_config``); unsubscribe links never expire.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from ps_integrations.csat_service.app import ServiceSettings
from ps_integrations.csat_service.limiter import LimitSettings

log = logging.getLogger(__name__)


def settings_from_environment() -> tuple[str, ServiceSettings]:
    url = os.environ.get("PS_CSAT_DATABASE_URL")
    secret = os.environ.get("PS_CSAT_SECRET_KEY")
    if not secret and os.environ.get("PS_CSAT_SECRET_KEY_FILE"):
        secret = Path(os.environ["PS_CSAT_SECRET_KEY_FILE"]).read_text(encoding="utf-8").strip()
    missing = [name for name, value in (("PS_CSAT_DATABASE_URL", url), ("PS_CSAT_SECRET_KEY", secret)) if not value]
    if missing:
        raise SystemExit(f"csat_service: set {', '.join(missing)}")
    if os.environ.get("PS_CSAT_TOKEN_DAYS"):
        log.warning(
            "PS_CSAT_TOKEN_DAYS is ignored: survey links carry their expiry, set by token_days of "
            "ps_csat_surveys_config"
        )
    storage = os.environ.get("PS_CSAT_RATE_LIMIT_STORAGE") or "memory://"
    if storage.startswith("memory://"):
        log.warning("rate limits are kept in this process only (PS_CSAT_RATE_LIMIT_STORAGE=memory://)")
    earlier = tuple(key.strip() for key in os.environ.get("PS_CSAT_EARLIER_SECRET_KEYS", "").split(",") if key.strip())
    settings = ServiceSettings(
        secret=str(secret),
        earlier_secrets=earlier,
        limits=LimitSettings(storage_uri=storage),
        secure_cookies=os.environ.get("PS_CSAT_INSECURE_COOKIES") != "1",
    )
    return str(url), settings


def main() -> int:
    import uvicorn
    from sqlalchemy import create_engine

    from ps_integrations.csat_service.app import create_app
    from ps_integrations.state_store import StateStore

    url, settings = settings_from_environment()
    store = StateStore(engine=create_engine(url, pool_pre_ping=True))  # the csat_* tables: the DAG creates them
    app = create_app(store, settings)
    uvicorn.run(
        app,
        host=os.environ.get("PS_CSAT_HOST", "127.0.0.1"),
        port=int(os.environ.get("PS_CSAT_PORT", "8090")),
        proxy_headers=True,
        server_header=False,
        log_level="info",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
