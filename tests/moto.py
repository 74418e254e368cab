"""A real S3-compatible HTTP server for tests and benchmarks: moto's `moto_server`, on a free port.

Tests talk to it over HTTP with boto3 exactly as to S3 (no in-process mocking). It accepts any credentials
until `enforce_auth()` is called; from then on only access keys created through its IAM API are accepted,
and only for what their policies allow. Objects live in the server's memory.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from tests.servers import free_port, wait_for_port

REGION = "us-east-1"
# Any value works until enforce_auth(); these name themselves so no one mistakes them for real ones.
ACCESS_KEY_ID = "testing-access-key-id"
SECRET_ACCESS_KEY = "testing-secret-access-key"


@dataclass
class MotoServer:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(
        self, service: str = "s3", *, access_key_id: str = ACCESS_KEY_ID, secret: str = SECRET_ACCESS_KEY
    ) -> Any:
        """A boto3 client of this server (for setting up and inspecting, beside the code under test)."""
        return boto3.client(
            service,
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret,
            config=Config(retries={"mode": "standard", "total_max_attempts": 3}),
        )

    def bucket_create(self, prefix: str = "test") -> str:
        """A new empty bucket with a unique name."""
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def storage_config(self, bucket: str, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments for S3Storage pointing at this server."""
        return {
            "bucket": bucket,
            "endpoint_url": self.endpoint_url,
            "region": REGION,
            "access_key_id": ACCESS_KEY_ID,
            "secret_access_key": SECRET_ACCESS_KEY,
            **overrides,
        }

    def access_key_create(self, user: str, *, policy: dict[str, Any] | None = None) -> tuple[str, str]:
        """An IAM user with an access key (and an inline policy if given): (access key id, secret)."""
        iam = self.client("iam")
        iam.create_user(UserName=user)
        if policy is not None:
            iam.put_user_policy(UserName=user, PolicyName="policy", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=user)["AccessKey"]
        return key["AccessKeyId"], key["SecretAccessKey"]

    def enforce_auth(self) -> None:
        """From now on, check every request's signature and IAM permissions (for the whole server)."""
        request = urllib.request.Request(
            f"{self.endpoint_url}/moto-api/reset-auth",
            data=b"0",
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()

    def uploads(self, bucket: str) -> list[str]:
        """Keys of the multipart uploads still open in the bucket."""
        return sorted(
            u["Key"] for u in self.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        )

    def keys(self, bucket: str) -> list[str]:
        """Every object key in the bucket, sorted."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


def _moto_binary() -> str:
    """moto_server from the virtualenv this Python runs in (requirements-dev.txt installs it)."""
    beside = Path(sys.executable).with_name("moto_server")
    found = str(beside) if beside.exists() else shutil.which("moto_server")
    if not found:
        pytest.fail("moto_server is not installed: run `make install-dev` first", pytrace=False)
    return found


@contextlib.contextmanager
def moto_server() -> Iterator[MotoServer]:
    """Start moto_server on 127.0.0.1 and a free port; stop it on exit. Its log goes to a temporary file,
    shown if it dies before listening."""
    binary = _moto_binary()
    port = free_port()
    with tempfile.TemporaryFile(prefix="insights-moto-") as log:
        process = subprocess.Popen([binary, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log)
        try:
            try:
                wait_for_port(port, timeout=60, process=process)
            except RuntimeError as exc:
                log.seek(0)
                raise RuntimeError(f"{exc}\n{log.read().decode(errors='replace')[-2000:]}") from exc
            yield MotoServer(port=port, process=process)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
