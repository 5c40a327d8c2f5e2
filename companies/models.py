"""Tenancy: companies, who may do what in them, and the audit trail."""

from __future__ import annotations

import unicodedata

from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.contrib.sessions.base_session import AbstractBaseSession
from django.core.exceptions import ValidationError
from django.core.validators import MinLengthValidator
from django.db import models
from django.urls import reverse


class Company(models.Model):
    """A tenant that groups Salesforce orgs; users get roles per company."""

    name = models.CharField(
        max_length=100, unique=True, validators=[MinLengthValidator(2)]
    )
    contact_emails = models.TextField(
        blank=True,
        max_length=2000,
        help_text="Comma-separated addresses that get connection alerts.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "companies"

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("companies:detail", args=[self.pk])

    def clean(self) -> None:
        # "Acme", "ACME", "Ａｃｍｅ" and "Ac\u200bme" are one company to a
        # person reading a list: a name that differs from another only by
        # case, compatibility form or invisible characters is refused.
        key = company_name_key(self.name)
        others = Company.objects.exclude(pk=self.pk).values_list("name", flat=True)
        for name in others:
            if company_name_key(name) == key:
                raise ValidationError(
                    {"name": f"A company called {name} already exists."},
                    code="duplicate_name",
                )


def company_name_key(name: str) -> str:
    """What two company names are compared by: NFKC, no invisible (format)
    characters, spaces collapsed, case-folded."""
    text = unicodedata.normalize("NFKC", name or "")
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    return " ".join(text.split()).casefold()


class Role(models.TextChoices):
    ADMINISTRATOR = "administrator", "Administrator"
    OPERATOR = "operator", "Operator"
    SUPPORT = "support", "Support"
    VIEWER = "viewer", "Viewer"


class RoleGrant(models.Model):
    """A user's role in one company, or everywhere for an Administrator."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="role_grants"
    )
    role = models.CharField(max_length=20, choices=Role.choices)
    company = models.ForeignKey(
        Company,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="role_grants",
        help_text="Empty only for Administrators, who see every company.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "company"], name="one_role_per_user_and_company"
            ),
            models.UniqueConstraint(
                fields=["user"],
                condition=models.Q(company__isnull=True),
                name="one_global_grant_per_user",
            ),
            models.CheckConstraint(
                condition=models.Q(company__isnull=False)
                | models.Q(role="administrator"),
                name="only_administrators_are_global",
            ),
        ]

    def __str__(self) -> str:
        where = self.company.name if self.company_id else "all companies"
        return f"{self.user} is {self.get_role_display()} in {where}"

    def clean(self) -> None:
        if self.company_id is None and self.role != Role.ADMINISTRATOR:
            raise ValidationError(
                {"company": "Pick a company: only Administrators are global."}
            )
        if self.role == Role.ADMINISTRATOR and self.company_id is not None:
            raise ValidationError(
                {"company": "Administrators are global: leave the company empty."}
            )


class AuditEvent(models.Model):
    """One change made in the console. Append-only.

    ``before`` and ``after`` never hold secrets: secrets are recorded as
    fingerprints by the services that write events.
    """

    class Outcome(models.TextChoices):
        SUCCESS = "success", "Success"
        FAILURE = "failure", "Failure"

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    actor_username = models.CharField(max_length=150, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    company = models.ForeignKey(
        Company, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    company_name = models.CharField(max_length=100, blank=True)
    org = models.ForeignKey(
        "orgs.SalesforceOrg",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="audit_events",
    )
    org_label = models.CharField(max_length=120, blank=True)
    action = models.CharField(max_length=64, db_index=True)
    outcome = models.CharField(
        max_length=10, choices=Outcome.choices, default=Outcome.SUCCESS
    )
    summary = models.CharField(max_length=300, blank=True)
    before = models.JSONField(default=dict, blank=True)
    after = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["company", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor_username} {self.action}"

    def save(self, *args: object, **kwargs: object) -> None:
        # Append-only: an existing event is never rewritten.
        if self.pk is not None and not kwargs.get("force_insert"):
            raise ValidationError("Audit events cannot be changed.")
        super().save(*args, **kwargs)  # type: ignore[arg-type]

    def delete(self, *args: object, **kwargs: object) -> tuple[int, dict[str, int]]:
        raise ValidationError("Audit events cannot be deleted.")


class Incident(models.Model):
    """Orgs of a company failing: one alert when it opens, one when it
    closes, whatever the number of orgs and checks in between."""

    company = models.ForeignKey(
        Company, on_delete=models.CASCADE, related_name="incidents"
    )
    opened_at = models.DateTimeField(auto_now_add=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    failing_orgs = models.JSONField(default=list, blank=True)
    opened_notified_at = models.DateTimeField(null=True, blank=True)
    closed_notified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["company"],
                condition=models.Q(closed_at__isnull=True),
                name="one_open_incident_per_company",
            )
        ]

    def __str__(self) -> str:
        return f"Incident at {self.company} since {self.opened_at:%Y-%m-%d %H:%M}"


class Invitation(models.Model):
    """An invitation to the console: a one-time link where the invitee sets
    a password. The link's token is kept as its SHA-256 hash, and encrypted
    only until a task has mailed it."""

    email = models.EmailField()
    # {"administrator": bool, "companies": {"<company id>": "<role>"}}
    roles = models.JSONField(default=dict, blank=True)
    token_hash = models.CharField(max_length=64, unique=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="invitations",
        help_text="The user who accepted it.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # The link's token, encrypted, only until the worker has mailed it (a
    # task message never carries it); then wiped.
    token_encrypted = models.TextField(blank=True, default="")
    mailed_at = models.DateTimeField(null=True, blank=True)
    mail_error = models.CharField(max_length=300, blank=True, default="")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Invitation for {self.email}"

    @property
    def mail_state(self) -> str:
        """ "sent", "failed" or "sending", for the Open invitations list."""
        if self.mailed_at:
            return "sent"
        return "failed" if self.mail_error else "sending"


class NotificationChannel(models.Model):
    """A company's webhook: where incidents are posted, signed with a secret
    that only the console and the receiver know (stored encrypted).

    The URL is encrypted too: a Slack-style URL is itself a credential (its
    path is the key). Pages and audit rows name it by host and fingerprint.
    """

    company = models.OneToOneField(
        Company, on_delete=models.CASCADE, related_name="webhook"
    )
    url_encrypted = models.TextField(editable=False)
    url_host = models.CharField("Webhook host", max_length=255, editable=False)
    url_fingerprint = models.CharField(max_length=16, editable=False)
    secret_encrypted = models.TextField(editable=False)
    enabled = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Webhook of {self.company}"


class NotificationDelivery(models.Model):
    """One message to one channel (an incident opened or closed, or a test),
    tried a bounded number of times. ``payload`` is what is sent, fixed when
    the delivery is made, so every attempt sends the same message."""

    class Kind(models.TextChoices):
        EMAIL = "email", "Email"
        WEBHOOK = "webhook", "Webhook"

    class Event(models.TextChoices):
        OPENED = "opened", "Incident opened"
        CLOSED = "closed", "Incident closed"
        TEST = "test", "Test"

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        RETRYING = "retrying", "Retrying"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    company = models.ForeignKey(
        Company, on_delete=models.CASCADE, related_name="notification_deliveries"
    )
    incident = models.ForeignKey(
        Incident,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="deliveries",
    )
    kind = models.CharField(max_length=10, choices=Kind.choices)
    event = models.CharField(max_length=10, choices=Event.choices)
    state = models.CharField(
        max_length=10, choices=State.choices, default=State.PENDING
    )
    payload = models.JSONField(default=dict, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["company", "-created_at"])]
        constraints = [
            # One message per incident and event on each channel, whatever
            # the number of workers evaluating the company at once.
            models.UniqueConstraint(
                fields=["incident", "event", "kind"],
                condition=models.Q(incident__isnull=False),
                name="one_delivery_per_incident_event_and_kind",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.get_event_display()} ({self.state})"


class ConsoleSession(AbstractBaseSession):
    """A session that names its user (``SESSION_ENGINE`` is
    ``companies.sessions``), so deactivating a user ends exactly their
    sessions with one query: Django's own table has no user column, and
    decoding every live session to find theirs grows with all users."""

    user_id = models.BigIntegerField(null=True, db_index=True)

    class Meta(AbstractBaseSession.Meta):
        db_table = "companies_console_session"

    @classmethod
    def get_session_store_class(cls) -> type[DatabaseSessionStore]:
        # Only for decoding, which is the database engine's (same salt).
        return DatabaseSessionStore
