"""Per-customer destinations: secrets encrypted at rest and write-only in the admin; test connection."""

from __future__ import annotations

import pytest
from django.db import connection

from insights.destinations import destination_secret_names, destination_secrets_set, destination_storage
from insights.models import Destination
from insights.secrets import secrets_decrypt, secrets_encrypt

SECRET = "s3cr3t-P@ssw0rd-never-stored-plain"


def _all_text_in_db() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM insights_destination")
        return repr(cursor.fetchall())


def test_secrets_round_trip_and_are_not_stored_in_plaintext(customer_factory):
    destination = Destination.objects.create(
        customer=customer_factory(),
        name="sftp",
        kind="sftp",
        host="h",
        username="u",
        host_key="ssh-ed25519 AAAA",
    )
    destination_secrets_set(destination, password=SECRET)
    assert SECRET not in _all_text_in_db()
    assert secrets_decrypt(Destination.objects.get(pk=destination.pk).secrets_encrypted) == {
        "password": SECRET
    }
    assert destination_secret_names(destination) == ["password"]
    destination_secrets_set(destination, password=None, private_key="KEY")  # None keeps the password
    assert destination_secret_names(destination) == ["password", "private_key"]


def test_unknown_secret_for_the_kind_is_refused(customer_factory):
    destination = Destination.objects.create(customer=customer_factory(), name="s3", kind="s3", bucket="b")
    with pytest.raises(ValueError, match="no secret"):
        destination_secrets_set(destination, password="x")


def test_encryption_is_randomised():
    assert secrets_encrypt({"a": "b"}) != secrets_encrypt({"a": "b"})
    assert secrets_encrypt({"a": ""}) == ""


def test_one_default_destination_per_customer(customer_factory):
    from django.db import IntegrityError, transaction

    customer = customer_factory()
    Destination.objects.create(customer=customer, name="one", kind="local", is_default=True)
    with pytest.raises(IntegrityError), transaction.atomic():
        Destination.objects.create(customer=customer, name="two", kind="local", is_default=True)


def test_no_destination_means_local_storage(settings, tmp_path):
    settings.EXPORT_LOCAL_DIR = tmp_path
    storage = destination_storage(None)
    storage.test_connection()  # writes, reads back and deletes a probe


def test_admin_keeps_secrets_write_only_and_tests_connections(
    admin_client, customer_factory, settings, tmp_path
):
    settings.EXPORT_LOCAL_DIR = tmp_path
    customer = customer_factory()
    response = admin_client.post(
        "/admin/insights/destination/add/",
        {
            "customer": customer.pk,
            "name": "vault",
            "kind": "sftp",
            "is_default": "on",
            "host": "127.0.0.1",
            "port": "1",
            "username": "u",
            "base_dir": ".",
            "host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB",
            "password": SECRET,
            "region": "us-east-1",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    destination = Destination.objects.get(name="vault")
    assert destination_secret_names(destination) == ["password"]
    page = admin_client.get(f"/admin/insights/destination/{destination.pk}/change/").content.decode()
    assert SECRET not in page and destination.secrets_encrypted not in page
    local = Destination.objects.create(customer=customer_factory("other"), name="here", kind="local")
    response = admin_client.post(
        "/admin/insights/destination/",
        {"action": "test_connection", "_selected_action": [destination.pk, local.pk]},
        follow=True,
    )
    text = response.content.decode()
    assert "here (local): connection works." in text
    assert "vault (sftp): failed" in text
    assert SECRET not in text


def test_admin_requires_sftp_fields(admin_client, customer_factory):
    response = admin_client.post(
        "/admin/insights/destination/add/",
        {
            "customer": customer_factory().pk,
            "name": "x",
            "kind": "sftp",
            "port": "22",
            "base_dir": ".",
            "region": "us-east-1",
        },
    )
    assert response.status_code == 200
    assert "Required for an SFTP destination." in response.content.decode()
