"""A local S3-compatible server for tests: moto's server mode on a free loopback port."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

ACCESS_KEY = "goldrl-test-key"
SECRET_KEY = "goldrl-test-secret"
REGION = "us-east-1"


@dataclass(frozen=True)
class LocalS3:
    """Where the local S3 server listens and how to reach it."""

    endpoint_url: str

    def storage_options(self) -> dict[str, Any]:
        """fsspec/s3fs options reaching this server (what GOLDRL_ARTIFACT_STORAGE_OPTIONS holds)."""
        return {
            "key": ACCESS_KEY,
            "secret": SECRET_KEY,
            "client_kwargs": {"endpoint_url": self.endpoint_url, "region_name": REGION},
        }

    def client(self) -> Any:
        """A plain boto3 S3 client of this server (to create buckets, tamper with objects)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
        )

    def new_bucket(self) -> str:
        """Create an empty bucket with a unique name and return the name."""
        name = f"goldrl-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name


@contextmanager
def local_s3() -> Iterator[LocalS3]:
    """Run moto's S3 server on 127.0.0.1 (a free port) for the duration of the block."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield LocalS3(endpoint_url=f"http://{host}:{port}")
    finally:
        server.stop()
