"""The operators' console for webhooks: adding one shows its secret once, the events and the delivery log."""

from __future__ import annotations

import re

import pytest

from insights.secrets import secrets_decrypt
from tests.webhooks.receiver import receiver_running
from webhooks.delivery import event_deliver
from webhooks.events import event_emit
from webhooks.models import EventState, EventType, Webhook, WebhookEvent
from webhooks.services import webhook_put


@pytest.fixture(autouse=True)
def _loopback_allowed(settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True


def test_adding_a_webhook_shows_its_new_secret_once(admin_client, customer_factory):
    acme = customer_factory("acme")
    response = admin_client.post(
        "/admin/webhooks/webhook/add/",
        {"customer": acme.pk, "url": "http://127.0.0.1:9/hooks", "events": ["query.completed"]},
        follow=True,
    )
    page = response.content.decode()
    (secret,) = re.findall(r"<code>(whsec_[^<]+)</code>", page)
    webhook = Webhook.objects.get(customer=acme)
    assert secrets_decrypt(webhook.secret_encrypted)["secret"] == secret
    assert webhook.events == [EventType.QUERY_COMPLETED]
    again = admin_client.get(f"/admin/webhooks/webhook/{webhook.pk}/change/").content.decode()
    assert secret not in again


def test_a_url_the_api_refuses_is_refused_in_the_console(admin_client, customer_factory, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    acme = customer_factory("acme")
    response = admin_client.post(
        "/admin/webhooks/webhook/add/",
        {"customer": acme.pk, "url": "http://169.254.169.254/", "events": ["query.completed"]},
    )
    assert "which is not a public address" in response.content.decode()
    assert not Webhook.objects.exists()


def test_the_delivery_log_and_deliver_again(admin_client, customer_factory, sent_tasks):
    acme = customer_factory("acme")
    with receiver_running(plan=[404]) as receiver:
        webhook_put(customer=acme, url=receiver.url)
        public_id = event_emit(customer_id=acme.pk, type="query.failed", data={}, subject="g1")
        event = WebhookEvent.objects.get(public_id=public_id)
        assert event_deliver(event_id=event.pk) == "failed"
        events = admin_client.get("/admin/webhooks/webhookevent/?state__exact=failed").content.decode()
        assert public_id in events
        log = admin_client.get(f"/admin/webhooks/deliveryattempt/?customer__id__exact={acme.pk}")
        assert log.status_code == 200 and "404" in log.content.decode()
        detail = admin_client.get(f"/admin/webhooks/webhookevent/{event.pk}/change/").content.decode()
        assert "ok" in detail and "failed" in detail  # the inline attempt: the answer's body and outcome
        admin_client.post(
            "/admin/webhooks/webhookevent/", {"action": "deliver_again", "_selected_action": [event.pk]}
        )
        assert WebhookEvent.objects.get(pk=event.pk).state == EventState.PENDING
        assert event_deliver(event_id=event.pk) == "delivered"
        assert [r.status for r in receiver.requests] == [404, 200]
