"""Admin: each customer's webhook (adding one generates its secret and shows it once), the events recorded for
it, and the delivery log (every attempt: status code, latency, the answer's first kilobyte)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from webhooks.addresses import url_settable
from webhooks.delivery import event_redeliver
from webhooks.errors import UrlRefused
from webhooks.models import DeliveryAttempt, EventType, Webhook, WebhookEvent
from webhooks.services import webhook_put


class WebhookForm(forms.ModelForm):
    events = forms.MultipleChoiceField(
        choices=EventType.choices, widget=forms.CheckboxSelectMultiple, initial=EventType.values
    )

    class Meta:
        model = Webhook
        fields = ["customer", "url", "events"]

    def clean_url(self) -> str:
        url = str(self.cleaned_data["url"])
        try:
            url_settable(url)
        except UrlRefused as refused:
            raise forms.ValidationError(refused.reason) from None
        return url


@admin.register(Webhook)
class WebhookAdmin(admin.ModelAdmin):
    form = WebhookForm
    list_display = ["customer", "url", "event_count", "created_at", "secret_rotated_at"]
    list_select_related = ["customer"]
    search_fields = ["customer__key", "customer__name", "url"]
    autocomplete_fields = ["customer"]
    readonly_fields = ["created_at", "secret_rotated_at"]
    actions = ["rotate_secret"]

    def get_readonly_fields(self, request: HttpRequest, obj: Webhook | None = None) -> list[str]:
        return [*self.readonly_fields, "customer"] if obj is not None else list(self.readonly_fields)

    @admin.display(description="events")
    def event_count(self, obj: Webhook) -> str:
        return f"{len(obj.events)} of {len(EventType.values)}"

    def save_model(self, request: HttpRequest, obj: Webhook, form: forms.ModelForm, change: bool) -> None:
        if change:  # the URL and the types; the secret changes only by the rotate action
            super().save_model(request, obj, form, change)
            return
        done = webhook_put(customer=obj.customer, url=obj.url, events=list(obj.events))
        obj.pk = done.webhook.pk
        obj.refresh_from_db()
        obj._state.adding = False
        self._secret_show(request, obj, done.secret)

    @admin.action(description="Rotate the signing secret of selected webhooks", permissions=["change"])
    def rotate_secret(self, request: HttpRequest, queryset: QuerySet[Webhook]) -> None:
        for webhook in queryset.select_related("customer"):
            try:
                done = webhook_put(customer=webhook.customer, url=webhook.url, events=list(webhook.events))
            except UrlRefused as refused:
                self.message_user(request, f"{webhook.customer}: {refused.reason}", messages.ERROR)
                continue
            self._secret_show(request, webhook, done.secret)

    def _secret_show(self, request: HttpRequest, webhook: Webhook, secret: str) -> None:
        self.message_user(
            request,
            format_html(
                "The signing secret of {}'s webhook is <code>{}</code>. Give it to the customer now: it will not "
                "be shown again.",
                webhook.customer,
                secret,
            ),
            messages.SUCCESS,
        )


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    fields = readonly_fields = (
        "number",
        "started_at",
        "status_code",
        "latency_ms",
        "outcome",
        "error",
        "response_body",
    )
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyAdmin):
    """Events recorded for customers' webhooks, in the order they happened; "deliver again" for failed ones."""

    list_display = [
        "public_id",
        "customer",
        "type",
        "subject",
        "sequence",
        "state",
        "attempts",
        "last_status_code",
        "created_at",
        "finished_at",
    ]
    list_filter = ["state", "type", "customer"]
    list_select_related = ["customer"]
    search_fields = ["public_id", "subject", "customer__key"]
    inlines = [DeliveryAttemptInline]
    actions = ["deliver_again"]

    def has_redeliver_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("webhooks.change_webhookevent"))

    @admin.action(description="Deliver selected failed or skipped events again", permissions=["redeliver"])
    def deliver_again(self, request: HttpRequest, queryset: QuerySet[WebhookEvent]) -> None:
        count = sum(event_redeliver(event=event) for event in queryset)
        self.message_user(request, f"{count} event(s) will be delivered again.", messages.SUCCESS)


@admin.register(DeliveryAttempt)
class DeliveryAttemptAdmin(ReadOnlyAdmin):
    """The delivery log: every POST of every event, per customer."""

    list_display = [
        "started_at",
        "customer",
        "event_type",
        "event_subject",
        "number",
        "status_code",
        "latency_ms",
        "outcome",
        "error",
    ]
    list_filter = ["outcome", "customer"]
    list_select_related = ["customer", "event"]
    search_fields = ["event__public_id", "event__subject", "customer__key", "url"]

    @admin.display(description="event")
    def event_type(self, obj: DeliveryAttempt) -> str:
        return obj.event.type

    @admin.display(description="subject")
    def event_subject(self, obj: DeliveryAttempt) -> str:
        return obj.event.subject
