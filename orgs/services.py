"""Writes for orgs and backup policies. Each runs in one transaction and
records exactly one audit event."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Value
from django.db.models.functions import Lower
from django.utils import timezone

from companies.audit import Actor, audit_record
from companies.models import Company
from connections.salesforce.urls import (
    InvalidSalesforceId,
    InvalidSalesforceUrl,
    normalize_org_url,
    to_18,
)

from .models import BackupPolicy, ConnectionStatus, OrgType, SalesforceOrg
from .tokens import org_refresh_token_store

if TYPE_CHECKING:
    # Only for the annotation: orgs never imports connections at run time.
    from connections.models import ExternalClientApp


class ConcurrentChange(Exception):
    """The org changed since the user loaded it (optimistic locking)."""

    message = (
        "Someone else changed this org while you were working on it. Reload the "
        "page to see the current connection, then make your change again."
    )


def org_snapshot(org: SalesforceOrg) -> dict[str, Any]:
    """The audit view of an org's connection: no secret, only fingerprints."""
    return {
        "alias": org.alias,
        "org_id": org.org_id,
        "company": org.company.name if org.company_id else None,
        "login_url": org.login_url,
        "instance_url": org.instance_url,
        "client_app": org.client_app.name if org.client_app_id else None,
        "consumer_key_hint": org.client_app.key_hint if org.client_app_id else None,
        "consumer_secret_fingerprint": (
            org.client_app.fingerprint if org.client_app_id else None
        ),
        "connected_as": org.connected_as_username,
        "refresh_token_fingerprint": org.refresh_token_fingerprint or None,
        "status": org.status,
        "version": org.version,
    }


def normalize_org_id(value: str) -> str:
    try:
        org_id = to_18(value.strip())
    except InvalidSalesforceId as exc:
        raise ValidationError({"org_id": str(exc)}) from None
    if not org_id.startswith("00D"):
        raise ValidationError({"org_id": "A Salesforce org ID starts with 00D."})
    return org_id


def _alias_check(alias: str, *, org: SalesforceOrg) -> None:
    """Aliases are unique ignoring case, compared with the database's
    LOWER() like the unique index (``org_alias_unique_ignoring_case``).

    An alias may not be another org's ID either: that ID is the other org's
    default alias, which it must be able to go back to."""
    others = SalesforceOrg.objects.all()
    if org.pk:
        others = others.exclude(pk=org.pk)
    lowered = Lower(Value(alias))
    if others.alias(key=Lower("alias")).filter(key=lowered).exists():
        raise ValidationError(
            {
                "alias": ValidationError(
                    f"Another org is already called {alias[:80]}.",
                    code="alias_taken",
                )
            }
        )
    if others.alias(key=Lower("org_id")).filter(key=lowered).exists():
        raise ValidationError(
            {
                "alias": ValidationError(
                    f"{alias[:80]} is the org ID of another org; pick another alias.",
                    code="alias_is_other_org_id",
                )
            }
        )


def _org_save(org: SalesforceOrg) -> None:
    """Save, turning a lost race for the alias into the same field error."""
    try:
        with transaction.atomic():
            org.save()
    except IntegrityError:
        _alias_check(org.alias, org=org)
        raise


@transaction.atomic
def org_create(
    *,
    actor: Actor,
    org_id: str,
    login_url: str,
    company: Company,
    alias: str = "",
    org_type: str = OrgType.PRODUCTION,
    instance_url: str = "",
    client_app: ExternalClientApp | None = None,
    refresh_token: str | None = None,
    connected_as_username: str = "",
    connected_as_user_id: str = "",
    granted_scopes: list[str] | None = None,
    status: str = ConnectionStatus.NEEDS_REAUTHORIZATION,
    status_reason: str = "",
    create_policy: bool = True,
) -> SalesforceOrg:
    org_id = normalize_org_id(org_id)
    try:
        login_url = normalize_org_url(login_url, allow_legacy_instance=True)
    except InvalidSalesforceUrl as exc:
        raise ValidationError({"login_url": str(exc)}) from None
    if SalesforceOrg.objects.filter(org_id=org_id).exists():
        raise ValidationError({"org_id": f"The org {org_id} is already registered."})
    org = SalesforceOrg(
        alias=alias.strip() or org_id,
        org_id=org_id,
        org_type=org_type,
        login_url=login_url,
        instance_url=instance_url,
        company=company,
        client_app=client_app,
        connected_as_username=connected_as_username,
        connected_as_user_id=connected_as_user_id,
        granted_scopes=granted_scopes or [],
        status=status,
        status_reason=status_reason,
        status_changed_at=timezone.now(),
    )
    org_refresh_token_store(org=org, token=refresh_token)
    _alias_check(org.alias, org=org)
    org.full_clean()
    _org_save(org)
    if create_policy:
        policy = BackupPolicy(
            org=org,
            name=f"Backup of {org.label}",
            org_url=org.login_url,
            client_app=client_app,
        )
        policy.full_clean()
        policy.save()
    audit_record(
        actor=actor,
        action="org.create",
        org=org,
        summary=f"Added org {org.label}",
        after=org_snapshot(org),
    )
    return org


def org_locked(org: SalesforceOrg | int, expected_version: int | None) -> SalesforceOrg:
    """The org row (an org or its pk), locked for this transaction;
    ``ConcurrentChange`` when its version is no longer the one the user
    loaded."""
    current = (
        SalesforceOrg.objects.select_for_update(of=("self",))
        .select_related("company", "client_app")
        .get(pk=org if isinstance(org, int) else org.pk)
    )
    if expected_version is not None and current.version != expected_version:
        raise ConcurrentChange(ConcurrentChange.message)
    return current


@transaction.atomic
def org_update(
    *,
    actor: Actor,
    org: SalesforceOrg,
    alias: str,
    is_identity_provider: bool | None = None,
    expected_version: int | None = None,
) -> SalesforceOrg:
    org = org_locked(org, expected_version)
    before = org_snapshot(org) | {"is_identity_provider": org.is_identity_provider}
    org.alias = alias.strip() or org.org_id
    if is_identity_provider is not None and is_identity_provider:
        # One sign-in provider: designating this org releases any other.
        SalesforceOrg.objects.filter(is_identity_provider=True).exclude(
            pk=org.pk
        ).update(is_identity_provider=False)
    if is_identity_provider is not None:
        org.is_identity_provider = is_identity_provider
    _alias_check(org.alias, org=org)
    org.full_clean()
    org.version += 1
    _org_save(org)
    audit_record(
        actor=actor,
        action="org.update",
        org=org,
        summary=f"Updated org {org.label}",
        before=before,
        after=org_snapshot(org) | {"is_identity_provider": org.is_identity_provider},
    )
    return org


@transaction.atomic
def orgs_move(*, actor: Actor, orgs: list[SalesforceOrg], to_company: Company) -> int:
    """Move orgs to another company: one audit event per org moved."""
    moved = 0
    for org in orgs:
        locked = org_locked(org, None)
        if locked.company_id == to_company.pk:
            continue
        before = org_snapshot(locked)
        locked.company = to_company
        locked.version += 1
        locked.save(update_fields=["company", "version", "updated_at"])
        audit_record(
            actor=actor,
            action="org.move",
            org=locked,
            company=to_company,
            summary=f"Moved {locked.label} from {before['company']} to "
            f"{to_company.name}",
            before=before,
            after=org_snapshot(locked),
        )
        moved += 1
    return moved


@transaction.atomic
def policy_update(
    *, actor: Actor, policy: BackupPolicy, data: dict[str, Any]
) -> BackupPolicy:
    policy = (
        BackupPolicy.objects.select_for_update(of=("self",))
        .select_related("org")
        .get(pk=policy.pk)
    )
    fields = ["name", "schedule", "enabled", "include_files", "retention_days"]
    before = {f: getattr(policy, f) for f in fields}
    for field in fields:
        setattr(policy, field, data[field])
    policy.full_clean()
    after = {f: getattr(policy, f) for f in fields}
    if before == after:
        return policy
    policy.save()
    audit_record(
        actor=actor,
        action="policy.update",
        org=policy.org,
        summary=f"Updated backup policy {policy.name}",
        before=before,
        after=after,
    )
    return policy
