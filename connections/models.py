"""How the console reaches Salesforce: client apps and their secrets."""

from __future__ import annotations

from django.db import models

from vbsf import encryption


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
