"""Delivery through the whole service, on both shapes: a customer whose default destination is S3 (a real
moto_server) or a chrooted SFTP account (a real OpenSSH sshd)."""

from __future__ import annotations

import gzip
import hashlib
import json
import time
import urllib.request
from collections.abc import Iterator

import pytest

from queries.ingest import DEMO_CUSTOMER_KEYS
from tests.moto import MotoServer, moto_server
from tests.seed_requests import REQUEST_1
from tests.service import SHAPES, Service, service_of_shape
from tests.sshd import SshdServer, sshd_server
from tests.test_service_e2e import _submit


@pytest.fixture(scope="module")
def s3() -> Iterator[MotoServer]:
    with moto_server() as server:
        yield server


@pytest.fixture(scope="module", params=SHAPES)
def service(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with service_of_shape(request, tmp_path_factory, "delivery") as running:
        running.worker_start()
        yield running


@pytest.fixture(scope="module")
def s3_customer(service: Service, s3: MotoServer) -> tuple[str, str]:
    key = service.customer_create(DEMO_CUSTOMER_KEYS[2])
    bucket = s3.bucket_create("results")
    config = {k: v for k, v in s3.storage_config(bucket, prefix="insights").items() if k != "endpoint_url"}
    config["endpoint_url"] = s3.endpoint_url
    service.destination_create(DEMO_CUSTOMER_KEYS[2], "bucket", config, default=True)
    return key, bucket


def test_result_on_s3_is_listed_with_presigned_urls_and_redirected(
    service: Service, s3: MotoServer, s3_customer: tuple[str, str]
) -> None:
    key, bucket = s3_customer
    guid = _submit(service, key, REQUEST_1)
    assert service.wait_terminal(guid, key)["status"] == "Completed"
    location = service.request("GET", f"/_rest/v4/dwh/Q/{guid}", key=key).json()
    entry = location["files"][0]
    assert entry["path"].startswith(f"reports/{DEMO_CUSTOMER_KEYS[2]}/{guid}_QueryExport_")
    with urllib.request.urlopen(entry["url"], timeout=30) as response:
        data = response.read()
    assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    assert gzip.decompress(data).decode().splitlines()[0] == "FlowId"
    redirect = service.request("GET", f"/_rest/v4/dwh/Q/{guid}/download", key=key)
    assert redirect.status == 303 and redirect.headers["Location"].startswith(s3.endpoint_url)
    keys = {o["Key"] for o in s3.client().list_objects_v2(Bucket=bucket)["Contents"]}
    assert f"insights/{entry['path']}" in keys
    manifest_key = f"insights/reports/{DEMO_CUSTOMER_KEYS[2]}/{guid}_manifest.json"
    manifest = json.loads(s3.client().get_object(Bucket=bucket, Key=manifest_key)["Body"].read())
    assert [p["sha256"] for p in manifest["parts"]] == [entry["sha256"]]
    assert s3.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_redeliver_copies_a_local_result_to_s3(service: Service, s3: MotoServer) -> None:
    customer = DEMO_CUSTOMER_KEYS[1]  # the service seeds the first three demo customers
    key = service.customer_create(customer)
    guid = _submit(service, key, REQUEST_1)
    assert service.wait_terminal(guid, key)["status"] == "Completed"  # published locally (no destination)
    bucket = s3.bucket_create("copies")
    config = {k: v for k, v in s3.storage_config(bucket).items()}
    service.destination_create(customer, "archive", config, default=False)
    output = service.manage("redeliver", guid, "--to", "archive")
    assert "redelivered 2 file(s)" in output
    keys = {o["Key"] for o in s3.client().list_objects_v2(Bucket=bucket)["Contents"]}
    assert f"reports/{customer}/{guid}_manifest.json" in keys and len(keys) == 2


def test_retention_deletes_the_s3_objects_and_expires_the_query(
    service: Service, s3: MotoServer, s3_customer: tuple[str, str]
) -> None:
    key, bucket = s3_customer
    guid = _submit(service, key, REQUEST_1)
    assert service.wait_terminal(guid, key)["status"] == "Completed"
    service.manage(
        "shell",
        "-c",
        (
            "from datetime import timedelta\nfrom django.utils import timezone\n"
            "from queries.models import QueryRequest\nfrom queries.maintenance import results_expire\n"
            f"QueryRequest.objects.filter(guid={guid!r}).update(finished_at=timezone.now() - timedelta(days=30))\n"
            "results_expire()\n"
        ),
    )
    gone = service.request("GET", f"/_rest/v4/dwh/Q/{guid}", key=key)
    assert gone.status == 410
    keys = {o["Key"] for o in s3.client().list_objects_v2(Bucket=bucket).get("Contents", [])}
    assert not any(guid in k for k in keys)


def test_deleting_an_export_on_s3_removes_every_object(
    service: Service, s3: MotoServer, s3_customer: tuple[str, str]
) -> None:
    key, bucket = s3_customer
    guid = _submit(service, key, REQUEST_1)
    assert service.wait_terminal(guid, key)["status"] == "Completed"
    assert any(guid in k for k in s3.keys(bucket))
    for _ in range(2):  # idempotent
        deleted = service.request("DELETE", f"/_rest/v4/dwh/exports/{guid}", key=key)
        assert (deleted.status, deleted.json()["status"]) == (200, "Deleted")
    assert not any(guid in k for k in s3.keys(bucket))
    assert s3.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


@pytest.fixture(scope="module")
def sshd() -> Iterator[SshdServer]:
    with sshd_server() as server:
        yield server


@pytest.fixture(scope="module")
def sftp_customer(service: Service, sshd: SshdServer) -> tuple[str, str]:
    """A customer whose default destination is the chrooted SFTP account: (customer key, API key)."""
    customer = DEMO_CUSTOMER_KEYS[0]
    key = service.customer_create(customer)
    config = sshd.config(user=sshd.chroot_user, private_key=None, password=sshd.chroot_password)
    service.destination_create(customer, "sftp", config, default=True, kind="sftp")
    return customer, key


def test_result_on_a_chrooted_sftp_destination(
    service: Service, sshd: SshdServer, sftp_customer: tuple[str, str]
) -> None:
    """The customer's SFTP account is chrooted; the result lands under its reports/ and streams back over HTTPS."""
    customer, key = sftp_customer
    guid = _submit(service, key, REQUEST_1)
    assert service.wait_terminal(guid, key)["status"] == "Completed"
    entry = service.request("GET", f"/_rest/v4/dwh/Q/{guid}", key=key).json()["files"][0]
    assert "url" not in entry
    on_server = sshd.chroot_dir / entry["path"]
    assert hashlib.sha256(on_server.read_bytes()).hexdigest() == entry["sha256"]
    assert (sshd.chroot_dir / f"reports/{customer}/{guid}_manifest.json").exists()
    assert not [p for p in on_server.parent.iterdir() if p.name.startswith(".")]  # no staging file left
    download = service.request("GET", f"/_rest/v4/dwh/Q/{guid}/download/0", key=key)
    assert download.status == 200 and hashlib.sha256(download.body).hexdigest() == entry["sha256"]
    ranged = service.request(
        "GET", f"/_rest/v4/dwh/Q/{guid}/download/0", key=key, headers={"Range": "bytes=5-9"}
    )
    assert ranged.status == 206 and ranged.body == download.body[5:10]
    # Each download opened a connection for the file and closed it once the file was sent (it used to stay
    # open: one SSH session per download, for as long as the web process lived).
    for _ in range(4):
        assert service.request("GET", f"/_rest/v4/dwh/Q/{guid}/download/0", key=key).status == 200
    _sessions_end_wait(sshd)


def _sessions_end_wait(sshd: SshdServer, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while sessions := sshd.session_pids():
        assert time.monotonic() < deadline, f"SSH sessions still open after {timeout}s: {sessions}"
        time.sleep(0.2)


def test_a_delete_the_sftp_server_refused_is_finished_by_the_next_one(
    service: Service, sshd: SshdServer, sftp_customer: tuple[str, str]
) -> None:
    """The destination refuses the delete (its password changed): 503, the export is Deleted, its files are
    still there. Once the password is right again, the same DELETE removes them: nothing is left behind."""
    customer, key = sftp_customer
    guid = _submit(service, key, REQUEST_1)
    assert service.wait_terminal(guid, key)["status"] == "Completed"
    reports = sshd.chroot_dir / "reports" / customer
    assert list(reports.glob(f"{guid}_*"))
    _sftp_password_set(service, customer, "not-the-password")
    refused = service.request("DELETE", f"/_rest/v4/dwh/exports/{guid}", key=key)
    assert refused.status == 503 and refused.json()["code"] == 503
    assert service.request("GET", f"/_rest/v4/dwh/Q/{guid}/status", key=key).json()["status"] == "Deleted"
    assert list(reports.glob(f"{guid}_*"))  # not removed yet
    _sftp_password_set(service, customer, sshd.chroot_password)
    again = service.request("DELETE", f"/_rest/v4/dwh/exports/{guid}", key=key)
    assert (again.status, again.json()["status"]) == (200, "Deleted")
    assert not list(reports.glob(f"{guid}_*"))
    _sessions_end_wait(sshd)


def _sftp_password_set(service: Service, customer: str, password: str) -> None:
    script = (
        "from insights.models import Destination\nfrom insights.destinations import destination_secrets_set\n"
        f"d = Destination.objects.get(customer__key={customer!r}, kind='sftp')\n"
        f"destination_secrets_set(d, password={password!r})\n"
    )
    service.manage("shell", "-c", script)
