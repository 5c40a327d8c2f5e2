"""Console sign-in settings (SPEC §6, §10): which org's app signs console
users in ("Log in with Salesforce"), and who is linked to which Salesforce
user. Each write is one transaction with one audit event."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, QuerySet

from companies.audit import Actor, audit_record
from orgs.models import SalesforceOrg
from orgs.services import org_locked

from ..models import SalesforceIdentityLink


def signin_provider_candidates() -> QuerySet[SalesforceOrg]:
    """Orgs that can sign users in: those with a client app."""
    return (
        SalesforceOrg.objects.filter(client_app__isnull=False)
        .select_related("company")
        .order_by("alias", "org_id")
    )


def signin_provider_current() -> SalesforceOrg | None:
    return (
        SalesforceOrg.objects.filter(is_identity_provider=True)
        .select_related("company", "client_app")
        .first()
    )


def identity_link_list() -> QuerySet[SalesforceIdentityLink]:
    return SalesforceIdentityLink.objects.select_related("user", "org").order_by(
        "user__username", "salesforce_username"
    )


def _release(org: SalesforceOrg) -> None:
    # The version changes with the provider: the org's app must then keep
    # ``openid`` (§4.3), which a wizard started before must learn.
    SalesforceOrg.objects.filter(pk=org.pk).update(
        is_identity_provider=False, version=F("version") + 1
    )


@transaction.atomic
def signin_provider_set(*, actor: Actor, org: SalesforceOrg) -> bool:
    """Make ``org`` the sign-in provider (any other stops being it)."""
    org = org_locked(org, None)
    if org.client_app_id is None:
        raise ValidationError(f"{org.label} has no client app to sign users in with.")
    if org.is_identity_provider:
        return False
    previous = (
        SalesforceOrg.objects.select_for_update()
        .filter(is_identity_provider=True)
        .first()
    )
    if previous is not None:
        _release(previous)
    SalesforceOrg.objects.filter(pk=org.pk).update(
        is_identity_provider=True, version=F("version") + 1
    )
    audit_record(
        actor=actor,
        action="auth.signin_provider_set",
        org=org,
        summary=f"Console users log in with Salesforce through {org.label}",
        before={"provider": previous.label if previous else None},
        after={"provider": org.label},
    )
    return True


@transaction.atomic
def signin_provider_clear(*, actor: Actor) -> bool:
    """Turn "Log in with Salesforce" off; False if it was off."""
    current = (
        SalesforceOrg.objects.select_for_update()
        .filter(is_identity_provider=True)
        .first()
    )
    if current is None:
        return False
    _release(current)
    audit_record(
        actor=actor,
        action="auth.signin_provider_clear",
        org=current,
        summary="Log in with Salesforce turned off",
        before={"provider": current.label},
        after={"provider": None},
    )
    return True


@transaction.atomic
def identity_link_delete(*, actor: Actor, link: SalesforceIdentityLink) -> None:
    """The console user can no longer log in as this Salesforce user."""
    link = (
        SalesforceIdentityLink.objects.select_for_update()
        .select_related("user", "org")
        .get(pk=link.pk)
    )
    audit_record(
        actor=actor,
        action="identity_link.delete",
        org=link.org,
        summary=f"Unlinked {link.user} from Salesforce user "
        f"{link.salesforce_username or link.salesforce_user_id}",
        before={
            "user": link.user.get_username(),
            "salesforce_user_id": link.salesforce_user_id,
            "salesforce_username": link.salesforce_username,
        },
    )
    link.delete()
