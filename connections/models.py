"""How the console reaches Salesforce: client apps and their secrets."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

from vbsf import encryption

from .permissions import INTEGRATION_LICENSE
from .salesforce.urls import validate_salesforce_url


class ExternalClientApp(models.Model):
    """A Salesforce app: consumer key, encrypted consumer secret, scopes.

    One per org since 3.2. A legacy shared connected app (one app for all
    orgs, as before 3.2) is flagged ``is_legacy_shared``.
    """

    name = models.CharField(max_length=80)
    consumer_key = models.CharField(max_length=255, unique=True)
    consumer_secret_encrypted = models.TextField(editable=False)
    consumer_secret_fingerprint = models.CharField(max_length=16, editable=False)
    scopes = models.JSONField(
        default=list, blank=True, help_text="Scopes Salesforce granted this app."
    )
    is_legacy_shared = models.BooleanField(
        default=False,
        help_text="The shared connected app used by every org before 3.2.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "external client app"

    def __str__(self) -> str:
        return f"{self.name} (key {self.key_hint})"

    @property
    def key_hint(self) -> str:
        # Consumer keys are not secret, but long: the tail identifies them.
        return f"…{self.consumer_key[-4:]}"

    @property
    def fingerprint(self) -> str:
        return self.consumer_secret_fingerprint

    def set_consumer_secret(self, secret: str) -> None:
        self.consumer_secret_encrypted = encryption.encrypt(secret)
        self.consumer_secret_fingerprint = encryption.fingerprint(secret)

    def get_consumer_secret(self) -> str:
        """Decrypt the secret; raises ``SecretUnavailable`` when it cannot."""
        return encryption.decrypt(self.consumer_secret_encrypted)


class ConnectionChangeQuerySet(models.QuerySet):
    def holding_replaced_token(self) -> ConnectionChangeQuerySet:
        """Changes that still hold a replaced or abandoned refresh token,
        kept only until it has been revoked at Salesforce."""
        return self.exclude(old_refresh_token_encrypted="")

    def mark_token_revoked(self, when: object) -> int:
        return self.update(old_refresh_token_encrypted="", old_token_revoked_at=when)


class ConnectionChange(models.Model):
    """A staged change of an org's client app and tokens (blue/green).

    The org keeps its old app and tokens until the change is applied at
    Finish; a change that never gets there ends rolled back or expired and
    leaves the org as it was. Also used for Add organization (no org yet) and
    for re-authorization (same app, new tokens).
    """

    class Kind(models.TextChoices):
        EDIT = "edit", "Edit Connection"
        ADD = "add", "Add organization"
        REAUTHORIZE = "reauthorize", "Re-authorize connection"

    class State(models.TextChoices):
        AWAITING_ACTIVATION = "awaiting_activation", "Waiting for Salesforce"
        ACTIVE = "active", "App active"
        EXCHANGING = "exchanging", "Completing sign-in"
        AUTHORIZED = "authorized", "Authorized"
        APPLIED = "applied", "Applied"
        ROLLED_BACK = "rolled_back", "Rolled back"
        EXPIRED = "expired", "Expired"
        FAILED = "failed", "Failed"

    OPEN_STATES = (
        State.AWAITING_ACTIVATION,
        State.ACTIVE,
        State.EXCHANGING,
        State.AUTHORIZED,
    )

    kind = models.CharField(max_length=20, choices=Kind.choices)
    state = models.CharField(
        max_length=24, choices=State.choices, default=State.AWAITING_ACTIVATION
    )
    org = models.ForeignKey(
        "orgs.SalesforceOrg",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="connection_changes",
    )
    company = models.ForeignKey(
        "companies.Company",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="For Add organization: the company the new org will join.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_from = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_version = models.PositiveIntegerField(default=0)
    client_app = models.ForeignKey(
        ExternalClientApp, on_delete=models.PROTECT, related_name="changes"
    )
    login_url = models.URLField(max_length=255, validators=[validate_salesforce_url])
    org_type = models.CharField(max_length=20, blank=True)

    # Activation probing (SPEC §4.1).
    activation_started_at = models.DateTimeField(null=True, blank=True)
    probe_count = models.PositiveIntegerField(default=0)
    last_probe_at = models.DateTimeField(null=True, blank=True)
    next_probe_at = models.DateTimeField(null=True, blank=True, db_index=True)
    activated_at = models.DateTimeField(null=True, blank=True)

    # OAuth (SPEC §4.2). The code and PKCE verifier are secrets: encrypted,
    # and the code is wiped as soon as it has been exchanged.
    code_verifier_encrypted = models.TextField(blank=True, editable=False)
    code_encrypted = models.TextField(blank=True, editable=False)
    authorize_started_at = models.DateTimeField(null=True, blank=True)

    # What the new tokens say.
    new_refresh_token_encrypted = models.TextField(blank=True, editable=False)
    new_refresh_token_fingerprint = models.CharField(max_length=16, blank=True)
    new_instance_url = models.URLField(
        max_length=255, blank=True, validators=[validate_salesforce_url]
    )
    new_org_id = models.CharField(max_length=18, blank=True)
    new_user_id = models.CharField(max_length=18, blank=True)
    new_username = models.CharField(max_length=255, blank=True)
    # For re-authorization: who the org ran as before, to tell when someone
    # logged in as another Salesforce user.
    previous_username = models.CharField(max_length=255, blank=True)
    granted_scopes = models.JSONField(default=list, blank=True)
    authorized_at = models.DateTimeField(null=True, blank=True)

    # After Finish: the replaced refresh token, kept only until it has been
    # revoked at Salesforce.
    old_refresh_token_encrypted = models.TextField(blank=True, editable=False)
    old_token_revoked_at = models.DateTimeField(null=True, blank=True)
    revoke_attempts = models.PositiveIntegerField(default=0)

    failure_code = models.CharField(max_length=40, blank=True)
    failure_message = models.CharField(max_length=500, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = ConnectionChangeQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["state", "next_probe_at"])]

    def __str__(self) -> str:
        target = self.org.label if self.org_id else self.login_url
        return f"{self.get_kind_display()} of {target} ({self.get_state_display()})"

    @property
    def is_open(self) -> bool:
        return self.state in self.OPEN_STATES

    # -- activation progress (SPEC §11): against Salesforce's window -------

    @property
    def activation_elapsed_seconds(self) -> float:
        if self.activation_started_at is None:
            return 0.0
        end = self.activated_at or self.finished_at or timezone.now()
        return max(0.0, (end - self.activation_started_at).total_seconds())

    @property
    def activation_window_seconds(self) -> int:
        return settings.ACTIVATION_WINDOW_SECONDS

    @property
    def activation_percent(self) -> int:
        share = self.activation_elapsed_seconds / self.activation_window_seconds
        return min(100, int(share * 100))

    @property
    def activation_overdue(self) -> bool:
        return self.activation_elapsed_seconds > self.activation_window_seconds

    @property
    def activation_expires_at(self) -> object:
        if self.activation_started_at is None:
            return None
        margin = settings.ACTIVATION_WINDOW_SECONDS + settings.ACTIVATION_MARGIN_SECONDS
        return self.activation_started_at + timedelta(seconds=margin)

    def set_secret(self, field: str, value: str | None) -> None:
        setattr(self, f"{field}_encrypted", encryption.encrypt(value) if value else "")
        if field == "new_refresh_token":
            self.new_refresh_token_fingerprint = (
                encryption.fingerprint(value) if value else ""
            )

    def hold_for_revocation(self, encrypted_token: str) -> None:
        """Keep a replaced token (already encrypted) until it is revoked."""
        if encrypted_token:
            self.old_refresh_token_encrypted = encrypted_token

    def abandon_new_token(self) -> bool:
        """The new token will never be used: hand it to revocation.

        Returns whether there was one (the caller then enqueues the revoke).
        """
        if not self.new_refresh_token_encrypted:
            return False
        self.old_refresh_token_encrypted = self.new_refresh_token_encrypted
        self.new_refresh_token_encrypted = ""
        return True

    def release_new_token(self) -> None:
        """The new token now belongs to the org: the change keeps no copy."""
        self.new_refresh_token_encrypted = ""

    @property
    def holds_replaced_token(self) -> bool:
        return bool(self.old_refresh_token_encrypted)

    @property
    def has_new_token(self) -> bool:
        return bool(self.new_refresh_token_encrypted)

    def get_secret(self, field: str) -> str:
        raw = getattr(self, f"{field}_encrypted")
        if not raw:
            raise encryption.SecretUnavailable(f"No {field.replace('_', ' ')} stored.")
        return encryption.decrypt(raw)


class PermissionCheck(models.Model):
    """One verification of the connected user's permissions, kept as history.

    ``results`` holds one entry per required permission:
    ``{"key", "field", "label", "purpose", "granted"}``.
    """

    class State(models.TextChoices):
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    org = models.ForeignKey(
        "orgs.SalesforceOrg",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="permission_checks",
    )
    change = models.ForeignKey(
        ConnectionChange,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="permission_checks",
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    state = models.CharField(
        max_length=10, choices=State.choices, default=State.RUNNING
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    checked_username = models.CharField(max_length=255, blank=True)
    checked_user_id = models.CharField(max_length=18, blank=True)
    license_name = models.CharField(max_length=80, blank=True)
    results = models.JSONField(default=list, blank=True)
    backup_ok = models.BooleanField(default=False)
    restore_ok = models.BooleanField(default=False)
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Permission check {self.pk} ({self.get_state_display()})"

    def group(self, purpose: str) -> list[dict[str, object]]:
        return [r for r in self.results if r.get("purpose") == purpose]

    @property
    def backup_results(self) -> list[dict[str, object]]:
        return self.group("backup")

    @property
    def restore_results(self) -> list[dict[str, object]]:
        return self.group("restore")

    def missing(self, purpose: str) -> list[dict[str, object]]:
        return [r for r in self.group(purpose) if not r.get("granted")]

    @property
    def missing_backup(self) -> list[dict[str, object]]:
        return self.missing("backup")

    @property
    def missing_restore(self) -> list[dict[str, object]]:
        return self.missing("restore")

    @property
    def integration_license(self) -> bool:
        return self.license_name == INTEGRATION_LICENSE


class SalesforceIdentityLink(models.Model):
    """A console user who may sign in as this Salesforce user (SPEC §6).

    Linked by an Administrator; unknown Salesforce users are refused.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="salesforce_identities",
    )
    org = models.ForeignKey(
        "orgs.SalesforceOrg", on_delete=models.CASCADE, related_name="identity_links"
    )
    salesforce_user_id = models.CharField("Salesforce user ID", max_length=18)
    salesforce_username = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["org", "salesforce_user_id"], name="one_link_per_sf_user"
            )
        ]

    def __str__(self) -> str:
        return f"{self.user} ↔ {self.salesforce_username or self.salesforce_user_id}"


class SignInAttempt(models.Model):
    """One "Log in with Salesforce": the code is exchanged by a task and the
    browser, polling, is signed in when the task has matched a linked user."""

    class State(models.TextChoices):
        STARTED = "started", "Started"
        EXCHANGING = "exchanging", "Checking with Salesforce"
        SUCCEEDED = "succeeded", "Signed in"
        REFUSED = "refused", "Refused"

    org = models.ForeignKey(
        "orgs.SalesforceOrg", on_delete=models.CASCADE, related_name="+"
    )
    state = models.CharField(
        max_length=12, choices=State.choices, default=State.STARTED
    )
    created_at = models.DateTimeField(auto_now_add=True)
    code_verifier_encrypted = models.TextField(blank=True, editable=False)
    code_encrypted = models.TextField(blank=True, editable=False)
    nonce = models.CharField(max_length=64, blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, related_name="+"
    )
    message = models.CharField(max_length=300, blank=True)
    consumed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"Sign-in attempt {self.pk} ({self.get_state_display()})"


class WizardState(models.Model):
    """Where an Edit Connection or Add organization wizard stands.

    Kept in the database, not in a browser session: every tab (and every
    Administrator) working on the org's connection sees the same step and
    choices, and a second Finish finds the run already finished. One row
    per org for Edit Connection; per user for Add organization (no org yet).
    """

    org = models.OneToOneField(
        "orgs.SalesforceOrg",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="wizard_state",
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        help_text="Add organization: whose wizard this is.",
    )
    # formtools' storage layout: current step, step data, extra data.
    data = models.JSONField(default=dict, blank=True)
    # Bumped by every Finish: a page rendered for an earlier run cannot
    # apply again.
    run = models.PositiveIntegerField(default=1)
    finished_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user"],
                condition=models.Q(org__isnull=True),
                name="one_add_wizard_per_user",
            )
        ]

    def __str__(self) -> str:
        return f"Wizard of {self.org or self.user} at {self.data.get('step')}"


class Campaign(models.Model):
    """A re-authorization campaign (SPEC §9): a named set of orgs to
    re-authorize by a deadline, one :class:`CampaignOrg` row per org.

    Closed when every row is connected, skipped or expired.
    """

    name = models.CharField(max_length=120)
    deadline = models.DateTimeField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    # The companies of its orgs, for scoping who may see the campaign
    # without reading every row.
    companies = models.ManyToManyField("companies.Company", related_name="+")

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_closed(self) -> bool:
        return self.closed_at is not None


class CampaignOrg(models.Model):
    """One org of a campaign, with its delegated re-authorization link.

    The link itself is never stored: it is signed (Django's signing, a
    purpose salt) over the row and ``link_nonce``. Clearing or changing the
    nonce revokes every link issued before, which is what makes a link
    single-use.
    """

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        LINK_SENT = "link_sent", "Link sent"
        OPENED = "opened", "Opened"
        CONNECTED = "connected", "Connected"
        FAILED = "failed", "Failed"
        EXPIRED = "expired", "Expired"
        SKIPPED = "skipped", "Skipped"

    FINISHED_STATES = (State.CONNECTED, State.EXPIRED, State.SKIPPED)

    campaign = models.ForeignKey(
        Campaign, on_delete=models.CASCADE, related_name="rows"
    )
    org = models.ForeignKey(
        "orgs.SalesforceOrg", on_delete=models.CASCADE, related_name="campaign_rows"
    )
    # The org's company when the row was made: scoping and counts without
    # a join through the org.
    company = models.ForeignKey(
        "companies.Company", on_delete=models.CASCADE, related_name="+"
    )
    state = models.CharField(
        max_length=12, choices=State.choices, default=State.PENDING
    )
    # Where "Send link" mails the link; typed once per org and offered
    # again in later campaigns.
    email = models.EmailField(blank=True)
    link_nonce = models.CharField(max_length=32, blank=True, editable=False)
    link_created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    link_sent_at = models.DateTimeField(null=True, blank=True)
    link_opened_at = models.DateTimeField(null=True, blank=True)
    link_used_at = models.DateTimeField(null=True, blank=True)
    reminded_at = models.DateTimeField(null=True, blank=True)
    # A hash of the browser that started the login through the link: the
    # link works in one browser only.
    browser_binding = models.CharField(max_length=64, blank=True, editable=False)
    change = models.ForeignKey(
        ConnectionChange,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="campaign_rows",
    )
    connected_as_username = models.CharField(max_length=255, blank=True)
    last_event = models.CharField(max_length=300, blank=True)
    last_event_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    # The demo's mail backends (console, file, memory) deliver nothing: the
    # last mail sent for the row is kept here, encrypted (its link is a
    # secret), so the campaign page can show it. Empty with SMTP.
    demo_mail_encrypted = models.TextField(blank=True, editable=False)

    class Meta:
        ordering = ["campaign", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "org"], name="one_row_per_org_and_campaign"
            )
        ]
        indexes = [models.Index(fields=["campaign", "state"])]

    def __str__(self) -> str:
        return f"{self.campaign} / {self.org_id} ({self.state})"

    @property
    def is_finished(self) -> bool:
        return self.state in self.FINISHED_STATES


class BulkAction(models.Model):
    """One bulk action on a selection of orgs (SPEC §9): a fan-out of
    tasks with bounded concurrency and a progress line."""

    class Kind(models.TextChoices):
        CHECK_NOW = "check_now", "Check now"
        VERIFY_PERMISSIONS = "verify_permissions", "Verify permissions"
        CAMPAIGN = "campaign", "Start re-authorization campaign"

    kind = models.CharField(max_length=20, choices=Kind.choices)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The list filter the selection came from ("Select all N matching"),
    # as the query string; empty for rows ticked one by one.
    filter_query = models.CharField(max_length=500, blank=True)
    org_ids = models.JSONField(default=list, editable=False)
    total = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(
        default=0, help_text="Selected orgs the user may not act on."
    )
    done = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    campaign = models.ForeignKey(
        Campaign, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} on {self.total} orgs"

    @property
    def is_finished(self) -> bool:
        return self.finished_at is not None
