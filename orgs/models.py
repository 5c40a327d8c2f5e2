"""Salesforce orgs and the backup policies that protect them."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Lower
from django.urls import reverse

from connections.salesforce.urls import (
    InvalidSalesforceId,
    to_18,
    validate_salesforce_url,
)
from vbsf import encryption


def validate_org_id(value: str) -> None:
    try:
        normalized = to_18(value)
    except InvalidSalesforceId as exc:
        raise ValidationError(str(exc), code="invalid_org_id") from None
    if not normalized.startswith("00D"):
        raise ValidationError(
            "A Salesforce org ID starts with 00D.", code="invalid_org_id"
        )


class OrgType(models.TextChoices):
    PRODUCTION = "production", "Production"
    SANDBOX = "sandbox", "Sandbox"
    DEVELOPER = "developer", "Developer"
    SCRATCH = "scratch", "Scratch"


class ConnectionStatus(models.TextChoices):
    CONNECTED = "connected", "Connected"
    PENDING_ACTIVATION = "pending_activation", "Pending activation"
    NEEDS_REAUTHORIZATION = "needs_reauthorization", "Needs re-authorization"
    URL_CHANGED = "url_changed", "URL changed"
    PERMISSIONS_MISSING = "permissions_missing", "Permissions missing"
    FAILED = "failed", "Failed"


# Statuses that need a person; the operator queue and dashboard list them.
NEEDS_ATTENTION = (
    ConnectionStatus.NEEDS_REAUTHORIZATION,
    ConnectionStatus.URL_CHANGED,
    ConnectionStatus.PERMISSIONS_MISSING,
    ConnectionStatus.FAILED,
)

FIX_HINTS = {
    ConnectionStatus.CONNECTED: "",
    ConnectionStatus.PENDING_ACTIVATION: (
        "Salesforce activates new app credentials within 10 minutes; nothing to do yet."
    ),
    ConnectionStatus.NEEDS_REAUTHORIZATION: (
        "Re-authorize the connection: log in to Salesforce again as a user with "
        "the required permissions."
    ),
    ConnectionStatus.URL_CHANGED: (
        "Salesforce answers at a new URL: apply the suggested organization URL."
    ),
    ConnectionStatus.PERMISSIONS_MISSING: (
        "Grant the missing permissions to the connected Salesforce user, then "
        "verify permissions again."
    ),
    ConnectionStatus.FAILED: (
        "Check again; if it keeps failing, check that Salesforce is reachable and "
        "re-authorize the connection."
    ),
}


class SalesforceOrgQuerySet(models.QuerySet):
    def with_refresh_token(self) -> SalesforceOrgQuerySet:
        return self.exclude(refresh_token_encrypted="")


class SalesforceOrg(models.Model):
    """One Salesforce org the backup service protects, and how it connects."""

    alias = models.CharField(max_length=80, blank=True)
    org_id = models.CharField(
        "org ID", max_length=18, unique=True, validators=[validate_org_id]
    )
    org_type = models.CharField(
        max_length=20, choices=OrgType.choices, default=OrgType.PRODUCTION
    )
    login_url = models.URLField(
        "organization URL",
        max_length=255,
        validators=[validate_salesforce_url],
        help_text="The org's My Domain URL, used for OAuth.",
    )
    instance_url = models.URLField(
        max_length=255, blank=True, validators=[validate_salesforce_url]
    )
    company = models.ForeignKey(
        "companies.Company", on_delete=models.PROTECT, related_name="orgs"
    )
    client_app = models.ForeignKey(
        "connections.ExternalClientApp",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="orgs",
    )
    connected_as_username = models.CharField(max_length=255, blank=True)
    connected_as_user_id = models.CharField(max_length=18, blank=True)
    granted_scopes = models.JSONField(default=list, blank=True)
    refresh_token_encrypted = models.TextField(blank=True, editable=False)
    refresh_token_fingerprint = models.CharField(
        max_length=16, blank=True, editable=False
    )
    status = models.CharField(
        max_length=30,
        choices=ConnectionStatus.choices,
        default=ConnectionStatus.NEEDS_REAUTHORIZATION,
        db_index=True,
    )
    status_reason = models.CharField(max_length=300, blank=True)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    suggested_url = models.URLField(
        max_length=255, blank=True, validators=[validate_salesforce_url]
    )
    last_checked_at = models.DateTimeField(null=True, blank=True)
    is_identity_provider = models.BooleanField(
        "console sign-in provider",
        default=False,
        help_text="Console users log in with Salesforce through this org's app.",
    )
    # Optimistic locking: every change of the connection bumps it, and a
    # wizard only applies when the version it started from is still current.
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = SalesforceOrgQuerySet.as_manager()

    class Meta:
        ordering = ["alias", "org_id"]
        verbose_name = "Salesforce org"
        indexes = [
            models.Index(fields=["company", "status"]),
            models.Index(fields=["status", "status_changed_at"]),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["is_identity_provider"],
                condition=models.Q(is_identity_provider=True),
                name="one_identity_provider_org",
            ),
            # People tell orgs apart by alias, so "Acme-Prod" and "acme-prod"
            # may not both exist. The services check first, with the clearer
            # message; this is the guarantee under concurrent saves.
            models.UniqueConstraint(
                Lower("alias"),
                name="org_alias_unique_ignoring_case",
                violation_error_message=(
                    "Another org already has this alias (aliases ignore case)."
                ),
            ),
        ]

    def __str__(self) -> str:
        return self.alias or self.org_id

    def get_absolute_url(self) -> str:
        return reverse("orgs:detail", args=[self.pk])

    @property
    def label(self) -> str:
        return self.alias or self.org_id

    @property
    def fix_hint(self) -> str:
        return FIX_HINTS.get(self.status, "")

    @property
    def needs_attention(self) -> bool:
        return self.status in NEEDS_ATTENTION

    @property
    def uses_legacy_shared_app(self) -> bool:
        return bool(self.client_app_id and self.client_app.is_legacy_shared)

    @property
    def has_refresh_token(self) -> bool:
        return bool(self.refresh_token_encrypted)

    def set_refresh_token(self, token: str | None) -> str:
        """Set the stored refresh token and its fingerprint on this instance.

        Only ``orgs.tokens.org_refresh_token_store`` calls it (test and
        benchmark fixtures aside); returns the encrypted token it replaces,
        for revocation.
        """
        replaced = self.refresh_token_encrypted
        if token:
            self.refresh_token_encrypted = encryption.encrypt(token)
            self.refresh_token_fingerprint = encryption.fingerprint(token)
        else:
            self.refresh_token_encrypted = ""
            self.refresh_token_fingerprint = ""
        return replaced

    def get_refresh_token(self) -> str:
        """Decrypt the refresh token; raises ``SecretUnavailable``."""
        if not self.refresh_token_encrypted:
            raise encryption.SecretUnavailable("This org has no refresh token.")
        return encryption.decrypt(self.refresh_token_encrypted)


class BackupPolicy(models.Model):
    """Protects exactly one org; its connection section mirrors the org's."""

    class Schedule(models.TextChoices):
        HOURLY = "hourly", "Every hour"
        DAILY = "daily", "Daily"
        WEEKLY = "weekly", "Weekly"

    org = models.OneToOneField(
        SalesforceOrg, on_delete=models.CASCADE, related_name="backup_policy"
    )
    name = models.CharField(max_length=100)
    schedule = models.CharField(
        max_length=10, choices=Schedule.choices, default=Schedule.DAILY
    )
    enabled = models.BooleanField(default=True)
    include_files = models.BooleanField(default=False)
    retention_days = models.PositiveIntegerField(default=365)
    # The connection the policy's jobs use; kept equal to the org's by the
    # services that change either (Finish, Edit organization URL).
    org_url = models.URLField(max_length=255, validators=[validate_salesforce_url])
    client_app = models.ForeignKey(
        "connections.ExternalClientApp",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "backup policies"

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("policies:edit", args=[self.pk])


class UrlVerification(models.Model):
    """Edit organization URL: the new URL is checked by a task, with the
    org's tokens, before anything is saved."""

    class State(models.TextChoices):
        RUNNING = "running", "Checking"
        SUCCEEDED = "succeeded", "Applied"
        FAILED = "failed", "Refused"

    org = models.ForeignKey(
        SalesforceOrg, on_delete=models.CASCADE, related_name="url_verifications"
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    requested_from = models.GenericIPAddressField(null=True, blank=True)
    new_url = models.URLField(max_length=255, validators=[validate_salesforce_url])
    state = models.CharField(
        max_length=10, choices=State.choices, default=State.RUNNING
    )
    message = models.CharField(max_length=500, blank=True)
    started_version = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.org} → {self.new_url} ({self.get_state_display()})"


class RefreshTokenRecord(models.Model):
    """One refresh token the console obtained from Salesforce (SPEC §9,
    token budget guard): for whom, with which app, whether it is still live.

    Salesforce keeps at most five refresh tokens per user and app and
    silently revokes the oldest at the sixth approval, so the console counts
    its own live tokens before sending anyone to Salesforce. The record also
    queues the revokes the console owes: while one is owed and nothing else
    holds the token (a ConnectionChange holds replaced and abandoned ones),
    the token is kept here, encrypted, and wiped once revoked.
    """

    class Purpose(models.TextChoices):
        EDIT_CONNECTION = "edit_connection", "Edit Connection"
        ADD_ORGANIZATION = "add_organization", "Add organization"
        REAUTHORIZATION = "reauthorization", "Re-authorize connection"
        DELEGATED_LINK = "delegated_link", "Delegated re-authorization link"
        SIGNIN = "signin", "Log in with Salesforce"
        ROTATION = "rotation", "Rotated by Salesforce on refresh"
        EXISTING = "existing", "Held before the ledger existed"

    class RevokeReason(models.TextChoices):
        REPLACED = "replaced", "Replaced by a newer token"
        ABANDONED = "abandoned", "Never used (abandoned)"
        WRONG_ORG = "wrong_org", "Opened the wrong org"
        SIGNIN = "signin", "Sign-in only: the console keeps no token"
        ROTATED = "rotated", "Rotated by Salesforce"
        EVICTED = "evicted_by_salesforce", "Revoked by Salesforce at a sixth approval"
        REVOKED_AT_SALESFORCE = (
            "revoked_at_salesforce",
            "Found revoked at Salesforce (Setup, or an approval elsewhere)",
        )

    org = models.ForeignKey(
        SalesforceOrg,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="token_records",
        help_text="The org the token was obtained for; empty for Add "
        "organization until Finish.",
    )
    client_app = models.ForeignKey(
        "connections.ExternalClientApp",
        on_delete=models.SET_NULL,
        null=True,
        related_name="+",
    )
    salesforce_org_id = models.CharField("Salesforce org ID", max_length=18)
    salesforce_user_id = models.CharField("Salesforce user ID", max_length=18)
    salesforce_username = models.CharField(max_length=255, blank=True)
    fingerprint = models.CharField(max_length=16)
    # A keyed hash of the whole token: recording is idempotent on it (a task
    # run twice records once), and a token is found again by it.
    token_hash = models.CharField(max_length=64, blank=True, editable=False)
    purpose = models.CharField(max_length=20, choices=Purpose.choices)
    login_url = models.URLField(
        max_length=255,
        validators=[validate_salesforce_url],
        help_text="Where the token is revoked.",
    )
    obtained_at = models.DateTimeField()
    # Salesforce evicts by the age of the approval; a rotated token keeps
    # the age of the approval it descends from.
    approved_at = models.DateTimeField()
    revoke_reason = models.CharField(
        max_length=24, choices=RevokeReason.choices, blank=True
    )
    revoke_requested_at = models.DateTimeField(null=True, blank=True)
    revoke_attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=300, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoke_token_encrypted = models.TextField(blank=True, editable=False)
    lost_connection_of = models.ForeignKey(
        SalesforceOrg,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The org whose connection this token was when Salesforce revoked it.",
    )

    class Meta:
        ordering = ["-obtained_at", "-id"]
        verbose_name = "refresh token record"
        indexes = [
            # The guard: live tokens of one user and app.
            models.Index(
                fields=["salesforce_user_id", "client_app", "revoked_at"],
                name="token_budget_idx",
            ),
            # Beat: revokes still owed.
            models.Index(
                fields=["revoked_at", "revoke_requested_at"],
                name="token_revoke_owed_idx",
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["token_hash"],
                condition=~models.Q(token_hash=""),
                name="one_record_per_refresh_token",
            )
        ]

    def __str__(self) -> str:
        state = "revoked" if self.revoked_at else "live"
        return f"{self.salesforce_username or self.salesforce_user_id} · {self.fingerprint} ({state})"

    @property
    def is_live(self) -> bool:
        return self.revoked_at is None

    @property
    def revoke_owed(self) -> bool:
        return self.revoked_at is None and self.revoke_requested_at is not None

    def get_revoke_token(self) -> str:
        """Decrypt the token held for its revoke; raises ``SecretUnavailable``."""
        if not self.revoke_token_encrypted:
            raise encryption.SecretUnavailable("No token is held for this revoke.")
        return encryption.decrypt(self.revoke_token_encrypted)
