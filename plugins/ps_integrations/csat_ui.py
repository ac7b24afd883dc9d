"""The "PS CSAT" page in the Airflow UI (issue #10): the latest CSAT summary and its trend chart.

Mounted by the plugin ``plugins/ps_csat_ui_plugin.py`` under ``/ps-csat`` of Airflow's API server.
Plugin apps are public by default, so every route depends on Airflow's own ``get_user``: a
request without a valid Airflow session cookie or bearer token gets 401/403.
"""

from __future__ import annotations

import base64
from collections.abc import Callable

from fastapi import Depends, FastAPI
from fastapi.responses import HTMLResponse, Response

HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def latest_from_state_store() -> dict[str, str] | None:
    """The summary the last ``ps_csat_summary`` run stored: period, HTML and PNG (base64)."""
    from ps_integrations.state_store import StateStore
    from ps_integrations.stores.csat import CsatResults

    latest = CsatResults(StateStore()).latest()
    if latest is None:
        return None
    return {"period": latest.period, "html": latest.html, "png": latest.png_base64}


def create_app(load_latest: Callable[[], dict[str, str] | None] = latest_from_state_store) -> FastAPI:
    from airflow.api_fastapi.core_api.security import get_user

    app = FastAPI(title="PS CSAT", dependencies=[Depends(get_user)], docs_url=None, redoc_url=None, openapi_url=None)

    def missing() -> Response:
        page = (
            "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>PS CSAT</title></head>"
            "<body style='font-family:Arial,Helvetica,sans-serif'><h2>PS CSAT</h2>"
            "<p>No CSAT summary yet: run the DAG <code>ps_csat_summary</code>.</p></body></html>"
        )
        return HTMLResponse(page, headers=HEADERS)

    @app.get("/")
    def summary() -> Response:
        latest = load_latest()
        if latest is None:
            return missing()
        return HTMLResponse(latest["html"], headers=HEADERS)

    @app.get("/trend.png")
    def trend() -> Response:
        latest = load_latest()
        if latest is None or not latest["png"]:
            return Response(status_code=404, headers=HEADERS)
        return Response(base64.b64decode(latest["png"]), media_type="image/png", headers=HEADERS)

    return app
