"""Fixtures of the store tests."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import create_engine, text

from ps_integrations.state_store import StateStore


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, monkeypatch, tmp_path):
    """A state store on a fresh SQLite file or a fresh PostgreSQL database (schema not applied)."""
    if request.param == "sqlite":
        uri = f"sqlite:///{tmp_path / 'state.db'}"
    else:
        base = request.getfixturevalue("postgres_uri")
        database = f"t_{uuid.uuid4().hex[:12]}"
        with create_engine(base, isolation_level="AUTOCOMMIT").connect() as connection:
            connection.execute(text(f"CREATE DATABASE {database}"))
        uri = base.rsplit("/", 1)[0] + "/" + database
    monkeypatch.setenv("AIRFLOW_CONN_PS_STATE", uri)
    return StateStore()
