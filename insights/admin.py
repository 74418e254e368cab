"""Admin for customers and access. Credentials are created through the services and shown once; the admin
displays their public prefix only, never their digest."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest
from django.utils.html import format_html

from insights import admin_destinations  # noqa: F401  (registers the Destination admin)
from insights.models import AccessToken, ApiKey, ApiUser, Customer
from insights.services import access_token_revoke, api_key_create, api_key_revoke


class ApiUserInline(admin.TabularInline):
    model = ApiUser
    extra = 0
    raw_id_fields = ["user"]
    readonly_fields = ["created_at"]


class ApiKeyInline(admin.TabularInline):
    """The customer's keys at a glance; keys are added and revoked on the API key pages."""

    model = ApiKey
    fields = readonly_fields = ("name", "prefix_shown", "created_at", "last_used_at", "revoked_at")
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="key")
    def prefix_shown(self, obj: ApiKey) -> str:
        return obj.display_prefix


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = [
        "key",
        "name",
        "max_concurrent_queries",
        "max_window_days",
        "max_bytes_per_query",
        "retention_days",
        "is_active",
        "created_at",
    ]
    list_filter = ["is_active"]
    search_fields = ["key", "name"]
    inlines = [ApiUserInline, ApiKeyInline]

    def get_readonly_fields(self, request: HttpRequest, obj: Customer | None = None) -> tuple[str, ...]:
        # The key names the customer's warehouse rows and report directory; renaming it would orphan both.
        return ("created_at",) if obj is None else ("key", "created_at")


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Adding a key generates it (api_key_create) and shows the raw key once, in the success message."""

    list_display = ["name", "customer", "prefix_shown", "created_at", "last_used_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter), "customer"]
    list_select_related = ["customer"]
    search_fields = ["name", "prefix", "customer__key", "customer__name"]
    autocomplete_fields = ["customer"]
    actions = ["revoke"]

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> tuple[str, ...]:
        if obj is None:
            return ("customer", "name")
        return ("customer", "name", "prefix_shown", "created_at", "last_used_at", "revoked_at")

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> tuple[str, ...]:
        if obj is None:
            return ()
        return ("customer", "prefix_shown", "created_at", "last_used_at", "revoked_at")

    def save_model(self, request: HttpRequest, obj: ApiKey, form: ModelForm, change: bool) -> None:
        if change:  # only the name is editable
            super().save_model(request, obj, form, change)
            return
        api_key, raw = api_key_create(customer=obj.customer, name=obj.name)
        # The admin goes on with `obj` (logging, redirect): make it the row the service created.
        obj.pk = api_key.pk
        obj.refresh_from_db()
        obj._state.adding = False
        # The message lives in the message storage until this operator's next page view, then it is gone.
        self.message_user(
            request,
            format_html(
                "The new API key is <code>{}</code>. Copy it now: it is stored only as a hash and will not "
                "be shown again.",
                raw,
            ),
            messages.SUCCESS,
        )

    @admin.display(description="key")
    def prefix_shown(self, obj: ApiKey) -> str:
        return obj.display_prefix

    @admin.action(description="Revoke selected API keys", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        keys = list(queryset.filter(revoked_at__isnull=True))
        for api_key in keys:
            api_key_revoke(api_key=api_key)
        self.message_user(request, f"Revoked {len(keys)} API key(s).", messages.SUCCESS)


@admin.register(ApiUser)
class ApiUserAdmin(admin.ModelAdmin):
    """Which customer a user logs in for. The user also needs the "Can use the Insights API" permission."""

    list_display = ["user", "customer", "created_at"]
    list_select_related = ["user", "customer"]
    search_fields = ["user__username", "customer__key", "customer__name"]
    raw_id_fields = ["user"]
    autocomplete_fields = ["customer"]
    readonly_fields = ["created_at"]


@admin.register(AccessToken)
class AccessTokenAdmin(admin.ModelAdmin):
    """Issued login tokens, read-only; they can be revoked. Tokens are issued only by the authenticate API."""

    list_display = ["prefix_shown", "user", "customer", "created_at", "expires_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter), "customer"]
    list_select_related = ["user", "customer"]
    search_fields = ["prefix", "user__username", "customer__key"]
    fields = readonly_fields = ("prefix_shown", "user", "customer", "created_at", "expires_at", "revoked_at")
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="token")
    def prefix_shown(self, obj: AccessToken) -> str:
        return obj.display_prefix

    @admin.action(description="Revoke selected tokens", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[AccessToken]) -> None:
        tokens = list(queryset.filter(revoked_at__isnull=True))
        for token in tokens:
            access_token_revoke(token=token)
        self.message_user(request, f"Revoked {len(tokens)} token(s).", messages.SUCCESS)
