"""``SandboxServer``: every stand-in, the SMTP sink, S3 (moto) and the admin API on local ports.

Used in-process by tests (``port=0`` everywhere) and by ``python -m sandbox serve`` for the demo.
Binds to loopback only.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
from pathlib import Path
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server

from sandbox.core.admin import AdminApp
from sandbox.core.standin import StandIn
from sandbox.core.tls import LocalCA
from sandbox.s3.server import FAKE_ACCESS_KEY, FAKE_SECRET_KEY, REGION, S3StandIn
from sandbox.smtp.sink import SmtpSink

log = logging.getLogger(__name__)
logging.getLogger("werkzeug").setLevel(logging.WARNING)
logging.getLogger("mail.log").setLevel(logging.WARNING)

DEFAULT_PORTS = {"admin": 8790, "smtp": 8725, "s3": 8794}


class SandboxServer:
    """Start with ``start()``, stop with ``stop()``; ``info()`` tells clients where everything is.

    :param seed: the seed (dict with one section per system); see sandbox/README.md.
    :param ports: fixed ports by component name (``admin``, ``smtp``, ``s3``, stand-in names);
        components not named get a free port.
    :param state_dir: where the CA file and ``sandbox.json`` are written.
    :param standins: stand-in instances to serve (default: one of each registered class).
    """

    def __init__(
        self,
        seed: dict[str, Any] | None = None,
        host: str = "127.0.0.1",
        ports: dict[str, int] | None = None,
        state_dir: Path | None = None,
        standins: list[StandIn] | None = None,
        public_host: str | None = None,
    ) -> None:
        if standins is None:
            from sandbox.registry import STANDIN_CLASSES

            standins = [cls() for cls in STANDIN_CLASSES]
        self.host = host
        # the name clients use (a compose service name when bound to 0.0.0.0); also in the TLS cert
        self.public_host = public_host or host
        self.ports = dict(ports or {})
        self.state_dir = Path(state_dir) if state_dir else Path(".sandbox")
        self.seed: dict[str, Any] = copy.deepcopy(seed or {})
        self.standins = {standin.name: standin for standin in standins}
        self.smtp = SmtpSink(host, self.ports.get("smtp", 0))
        self.s3 = S3StandIn(host, self.ports.get("s3", 0), self.public_host)
        self.ca: LocalCA | None = None
        self._http_servers: list[BaseWSGIServer] = []
        self._threads: list[threading.Thread] = []
        self.admin_url = ""

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self) -> SandboxServer:
        self.ca = LocalCA(self.state_dir, self.public_host)
        for name, standin in self.standins.items():
            context = self.ca.server_context() if standin.https else None
            server = self._serve(standin, self.ports.get(name, 0), context)
            scheme = "https" if standin.https else "http"
            standin.base_url = f"{scheme}://{self._url_host}:{server.server_port}"
        admin = self._serve(AdminApp(self), self.ports.get("admin", 0), None)
        self.admin_url = f"http://{self._url_host}:{admin.server_port}/_sandbox"
        self.smtp.start()
        self.s3.start()
        self.load_seed(self.seed)
        self._write_info()
        log.info("Sandbox up: %s", json.dumps(self.info()))
        return self

    def stop(self) -> None:
        for server in self._http_servers:
            server.shutdown()
            server.server_close()
        self._http_servers.clear()
        self.smtp.stop()
        self.s3.stop()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def _url_host(self) -> str:
        return self.public_host

    def _serve(self, app: Any, port: int, context: Any) -> BaseWSGIServer:
        server = make_server(self.host, port, app, threaded=True, ssl_context=context)
        thread = threading.Thread(target=server.serve_forever, name=f"sandbox-{port}", daemon=True)
        thread.start()
        self._http_servers.append(server)
        self._threads.append(thread)
        return server

    # --- state ---------------------------------------------------------------------------------
    def load_seed(self, seed: dict[str, Any]) -> None:
        self.seed = copy.deepcopy(seed)
        for name, standin in self.standins.items():
            standin.load_seed(copy.deepcopy(self.seed.get(name, {})))
            standin.faults.reset()
            standin.sessions.expire_all()
            standin.clear_call_counts()
        self.smtp.load_seed(self.seed.get("smtp", {}))
        self.s3.load_seed(self.seed.get("s3", {}))
        if self.seed.get("csat") is not None:  # spans GitLab and Salesforce: after their own sections
            from sandbox.seeds import csat

            csat.apply(self, copy.deepcopy(self.seed["csat"] or {}))

    def reset(self) -> None:
        self.load_seed(self.seed)

    def standin(self, name: str) -> StandIn:
        return self.standins[name]

    def component(self, name: str) -> Any:
        if name == "smtp":
            return self.smtp
        if name == "s3":
            return self.s3
        return self.standins[name]

    def url(self, name: str) -> str:
        return self.standins[name].base_url

    def info(self) -> dict[str, Any]:
        return {
            "admin": self.admin_url,
            "ca_bundle": str(self.ca.ca_path.resolve()) if self.ca else None,
            "systems": {name: standin.base_url for name, standin in self.standins.items()},
            "smtp": {"host": self._url_host, "port": self.smtp.port},
            "s3": {
                "endpoint_url": self.s3.url,
                "aws_access_key_id": FAKE_ACCESS_KEY,
                "region_name": REGION,
                "buckets": self.s3.buckets,
            },
        }

    def _write_info(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        info = {**self.info(), "airflow_connections": self.airflow_connections()}
        (self.state_dir / "sandbox.json").write_text(json.dumps(info, indent=2))

    def airflow_connections(self) -> dict[str, dict[str, Any]]:
        """Airflow connections (as AIRFLOW_CONN_* JSON) pointing the product at this sandbox."""
        connections: dict[str, dict[str, Any]] = {
            "smtp_default": {
                "conn_type": "smtp",
                "host": self._url_host,
                "port": self.smtp.port,
                "extra": {
                    "disable_ssl": True,
                    "disable_tls": True,
                    "from_email": "ps-integrations@example.com",
                },
            },
            "aws_sandbox": {
                "conn_type": "aws",
                "login": FAKE_ACCESS_KEY,
                "password": FAKE_SECRET_KEY,
                "extra": {"endpoint_url": self.s3.url, "region_name": REGION},
            },
        }
        for standin in self.standins.values():
            connections.update(getattr(standin, "airflow_connections", lambda _ca: {})(self.info()["ca_bundle"]))
        return connections
