"""Access to an org with its stored connection: one refresh at a time."""

from __future__ import annotations

from django.db import transaction

from connections import salesforce

from .models import SalesforceOrg


def org_access_token(*, org_id: int) -> salesforce.TokenSet:
    """Refresh the org's access token with its stored app and refresh token.

    The org row stays locked during the refresh, so two checks of one org
    never refresh at once, and a rotated refresh token is saved in the same
    transaction that learnt it.
    """
    with transaction.atomic():
        org = (
            SalesforceOrg.objects.select_for_update(of=("self",))
            .select_related("client_app")
            .get(pk=org_id)
        )
        if org.client_app is None:
            raise salesforce.InvalidGrant("This org has no client app.")
        tokens = salesforce.refresh(
            login_url=org.login_url,
            client_id=org.client_app.consumer_key,
            client_secret=org.client_app.get_consumer_secret(),
            refresh_token=org.get_refresh_token(),
            expected_org_id=org.org_id,
        )
        if tokens.refresh_token:
            org.set_refresh_token(tokens.refresh_token)
            org.save(
                update_fields=[
                    "refresh_token_encrypted",
                    "refresh_token_fingerprint",
                    "updated_at",
                ]
            )
    return tokens
