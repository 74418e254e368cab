"""Admin for export destinations: secrets are write-only fields; "test connection" probes the destination."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from exports.errors import StorageError
from insights.destinations import destination_secret_names, destination_secrets_set, destination_test
from insights.models import Destination


class DestinationForm(forms.ModelForm):
    """The secrets are never shown: a blank field keeps the stored value; "clear" removes it."""

    password = forms.CharField(required=False, widget=forms.PasswordInput, help_text="SFTP password.")
    private_key = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "autocomplete": "off"}),
        help_text="SFTP private key (PEM). Write-only: it is not shown after saving.",
    )
    secret_access_key = forms.CharField(
        required=False, widget=forms.PasswordInput, help_text="S3 secret key."
    )
    endpoint_url = forms.URLField(
        required=False,
        assume_scheme="https",
        help_text="For S3-compatible servers (MinIO ...); empty for AWS.",
    )
    clear_secrets = forms.BooleanField(required=False, help_text="Remove every stored secret.")

    class Meta:
        model = Destination
        fields = (
            "customer",
            "name",
            "kind",
            "is_default",
            "host",
            "port",
            "username",
            "base_dir",
            "host_key",
            "bucket",
            "prefix",
            "region",
            "endpoint_url",
            "access_key_id",
        )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        kind = data.get("kind")
        if kind == "sftp":
            for name in ("host", "username", "host_key"):
                if not data.get(name):
                    self.add_error(name, "Required for an SFTP destination.")
        if kind == "s3" and not data.get("bucket"):
            self.add_error("bucket", "Required for an S3 destination.")
        return data


@admin.register(Destination)
class DestinationAdmin(admin.ModelAdmin):
    form = DestinationForm
    list_display = ("customer", "name", "kind", "is_default", "host", "bucket", "secrets_set")
    list_filter = ("kind", "is_default")
    search_fields = ("customer__key", "name", "host", "bucket")
    actions = ("test_connection",)
    fieldsets = (
        (None, {"fields": ("customer", "name", "kind", "is_default")}),
        ("SFTP", {"fields": ("host", "port", "username", "base_dir", "host_key", "password", "private_key")}),
        (
            "S3",
            {"fields": ("bucket", "prefix", "region", "endpoint_url", "access_key_id", "secret_access_key")},
        ),
        ("Secrets", {"fields": ("clear_secrets",)}),
    )

    @admin.display(description="secrets set")
    def secrets_set(self, obj: Destination) -> str:
        return ", ".join(destination_secret_names(obj)) or "-"

    def save_model(self, request: HttpRequest, obj: Destination, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        data = form.cleaned_data
        if data.get("clear_secrets"):
            obj.secrets_encrypted = ""
            obj.save(update_fields=["secrets_encrypted"])
        wanted = {"sftp": ("password", "private_key"), "s3": ("secret_access_key",)}.get(obj.kind, ())
        given = {name: data[name] for name in wanted if data.get(name)}
        if given:
            destination_secrets_set(obj, **given)

    @admin.action(
        description="Test connection (write, read back and delete a probe file)", permissions=["change"]
    )
    def test_connection(self, request: HttpRequest, queryset: QuerySet[Destination]) -> None:
        for destination in queryset.select_related("customer"):
            try:
                destination_test(destination)
            except StorageError as error:
                self.message_user(request, f"{destination}: failed: {error}", messages.ERROR)
            else:
                self.message_user(request, f"{destination}: connection works.", messages.SUCCESS)
