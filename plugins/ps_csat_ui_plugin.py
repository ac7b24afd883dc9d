"""Airflow plugin: the "PS CSAT" page (latest CSAT summary) in the Airflow UI's navigation."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from ps_integrations.csat_ui import create_app


class PsCsatUiPlugin(AirflowPlugin):
    name = "ps_csat_ui"
    fastapi_apps = [{"app": create_app(), "url_prefix": "/ps-csat", "name": "PS CSAT"}]
    external_views = [
        {
            "name": "PS CSAT",
            "href": "/ps-csat/",
            "destination": "nav",
            "category": "browse",
            "url_route": "ps-csat",
        }
    ]
