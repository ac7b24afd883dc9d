"""A local certificate authority for the stand-ins that must speak HTTPS.

Clients trust it explicitly (the CA file path is published by the server); nothing is installed
system-wide. Note: these machines set ``REQUESTS_CA_BUNDLE``, which overrides a requests session's
``verify`` unless ``trust_env`` is off, so clients pass the CA bundle per session or per process.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import trustme

SERVER_NAMES = ("localhost", "127.0.0.1", "::1")


class LocalCA:
    def __init__(self, directory: Path, public_host: str | None = None) -> None:
        self._ca = trustme.CA(organization_name="ps-integrations sandbox")
        names = SERVER_NAMES if public_host in (None, "0.0.0.0", *SERVER_NAMES) else (*SERVER_NAMES, public_host)  # noqa: S104
        self._server_cert = self._ca.issue_cert(*names)
        directory.mkdir(parents=True, exist_ok=True)
        self.ca_path = directory / "sandbox-ca.pem"
        self._ca.cert_pem.write_to_path(str(self.ca_path))

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._server_cert.configure_cert(context)
        return context
