"""Read-only admin: emails with their attempts; tokens and providers without secrets. Its log-in
is throttled like the site's (emailservice/urls.py routes /admin/login/ through
mailer.web.accounts.admin_login, which answers a throttled attempt with a 429)."""

from django.contrib import admin

from .models import ApiToken, DeliveryAttempt, Email, ProviderConfig
from .web.account_forms import AdminLoginForm

admin.site.login_form = AdminLoginForm


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    can_delete = False
    fields = [
        "started_at",
        "provider_name",
        "provider_kind",
        "outcome",
        "error_code",
        "error_message",
        "provider_message_id",
        "duration_ms",
    ]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Email)
class EmailAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "account",
        "subject",
        "status",
        "sent_via_kind",
        "possible_duplicate",
        "created_at",
    ]
    list_filter = ["status", "sent_via_kind", "possible_duplicate"]
    search_fields = ["subject", "from_email", "message_id", "provider_message_id"]
    exclude = ["attachments"]
    inlines = [DeliveryAttemptInline]


@admin.register(ProviderConfig)
class ProviderConfigAdmin(ReadOnlyAdmin):
    list_display = ["id", "account", "name", "kind", "priority", "enabled"]
    exclude = ["secrets_encrypted"]


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    list_display = ["id", "account", "name", "prefix", "created_at", "last_used_at", "revoked_at"]
    exclude = ["digest"]
