"""An API client for Django's test client, authenticated as a customer with a new API key."""

from __future__ import annotations

from rest_framework.test import APIClient

from insights.services import api_key_create


def api_client(customer, name: str = "test") -> APIClient:
    _, key = api_key_create(customer=customer, name=name)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client
