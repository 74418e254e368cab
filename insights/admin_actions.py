"""Permissions of the console's actions on read-only pages: the pages change nothing for anyone, so an action
that changes something says which of the model's Django permissions it needs: `permissions=["operate"]` (the
change permission: cancel, re-run, pause, run now...) or `permissions=["remove"]` (the delete permission:
delete results, delete schedules, which stand in for Django's own delete)."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import get_permission_codename
from django.http import HttpRequest


class OperatorActions(admin.ModelAdmin):
    def has_operate_permission(self, request: HttpRequest) -> bool:
        return self._model_permission(request, "change")

    def has_remove_permission(self, request: HttpRequest) -> bool:
        return self._model_permission(request, "delete")

    def _model_permission(self, request: HttpRequest, action: str) -> bool:
        codename = get_permission_codename(action, self.opts)
        return bool(request.user.has_perm(f"{self.opts.app_label}.{codename}"))
