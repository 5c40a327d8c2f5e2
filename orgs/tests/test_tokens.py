"""The one writer of an org's stored refresh token."""

from __future__ import annotations

import pytest

from orgs.models import SalesforceOrg
from orgs.tokens import org_refresh_token_store
from tests.factories import SalesforceOrgFactory
from vbsf import encryption

pytestmark = pytest.mark.django_db


def test_it_stores_the_token_encrypted_with_its_fingerprint_and_returns_the_old():
    org = SalesforceOrgFactory(refresh_token="old-token")
    old_encrypted = org.refresh_token_encrypted

    replaced = org_refresh_token_store(org=org, token="new-token")
    org.save()

    org.refresh_from_db()
    assert replaced == old_encrypted
    assert org.get_refresh_token() == "new-token"
    assert org.refresh_token_fingerprint == encryption.fingerprint("new-token")
    assert "new-token" not in org.refresh_token_encrypted


def test_a_rotation_is_stored_while_the_org_still_holds_the_refreshed_token():
    org = SalesforceOrgFactory(refresh_token="old-token")

    replaced = org_refresh_token_store(
        org=org, token="rotated", replacing=encryption.fingerprint("old-token")
    )

    assert replaced is not None
    assert SalesforceOrg.objects.get(pk=org.pk).get_refresh_token() == "rotated"


def test_a_rotation_loses_to_a_token_stored_meanwhile():
    """GIVEN a refresh of token A WHEN Finish stored token B meanwhile THEN
    the rotated A' is not written over B."""
    org = SalesforceOrgFactory(refresh_token="token-a")
    finish_view = SalesforceOrg.objects.get(pk=org.pk)
    org_refresh_token_store(org=finish_view, token="token-b")
    finish_view.save()

    replaced = org_refresh_token_store(
        org=org, token="token-a-rotated", replacing=encryption.fingerprint("token-a")
    )

    assert replaced is None
    assert SalesforceOrg.objects.get(pk=org.pk).get_refresh_token() == "token-b"
