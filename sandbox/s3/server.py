"""S3 through moto's server mode (s3fs is not intercepted by moto's in-process mock)."""

from __future__ import annotations

from typing import Any

import requests
from moto.server import ThreadedMotoServer

from sandbox.smtp.sink import _free_port

FAKE_ACCESS_KEY = "sandbox-access-key"
FAKE_SECRET_KEY = "sandbox-secret-key"
REGION = "us-east-1"


class S3StandIn:
    name = "s3"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, public_host: str | None = None) -> None:
        self.host = host
        self.public_host = public_host or host
        self.port = port or _free_port(host)
        self._server = ThreadedMotoServer(ip_address=host, port=self.port, verbose=False)
        self.buckets: list[str] = []

    @property
    def url(self) -> str:
        """The endpoint clients use (the public host name)."""
        return f"http://{self.public_host}:{self.port}"

    @property
    def _local_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop()

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self._local_url,
            aws_access_key_id=FAKE_ACCESS_KEY,
            aws_secret_access_key=FAKE_SECRET_KEY,
            region_name=REGION,
        )

    def load_seed(self, seed: dict[str, Any]) -> None:
        requests.post(f"{self._local_url}/moto-api/reset", timeout=10).raise_for_status()
        self.buckets = list(seed.get("buckets", []))
        client = self.client()
        for bucket in self.buckets:
            client.create_bucket(Bucket=bucket)

    def state(self) -> dict[str, Any]:
        client = self.client()
        contents: dict[str, list[dict[str, Any]]] = {}
        for bucket in client.list_buckets().get("Buckets", []):
            paginator = client.get_paginator("list_objects_v2")
            keys: list[dict[str, Any]] = []
            for page in paginator.paginate(Bucket=bucket["Name"]):
                keys.extend({"key": item["Key"], "size": item["Size"]} for item in page.get("Contents", []))
            contents[bucket["Name"]] = keys
        return {"buckets": contents}
