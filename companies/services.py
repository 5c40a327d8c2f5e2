"""Writes for companies and role grants, and the audit of password
sign-ins. Each runs in one transaction and records exactly one audit
event."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_ipv46_address
from django.db import transaction

from .audit import Actor, audit_record
from .models import AuditEvent, Company, RoleGrant


@transaction.atomic
def company_create(*, actor: Actor, name: str, contact_emails: str = "") -> Company:
    company = Company(name=name.strip(), contact_emails=contact_emails.strip())
    company.full_clean()
    company.save()
    audit_record(
        actor=actor,
        action="company.create",
        company=company,
        summary=f"Created company {company.name}",
        after={"name": company.name, "contact_emails": company.contact_emails},
    )
    return company


@transaction.atomic
def company_update(
    *, actor: Actor, company: Company, name: str, contact_emails: str
) -> Company:
    company = Company.objects.select_for_update().get(pk=company.pk)
    before = {"name": company.name, "contact_emails": company.contact_emails}
    company.name = name.strip()
    company.contact_emails = contact_emails.strip()
    company.full_clean()
    after = {"name": company.name, "contact_emails": company.contact_emails}
    if after == before:
        return company
    company.save()
    audit_record(
        actor=actor,
        action="company.update",
        company=company,
        summary=f"Renamed company {before['name']} to {company.name}"
        if before["name"] != company.name
        else f"Changed contacts of {company.name}",
        before=before,
        after=after,
    )
    return company


@transaction.atomic
def company_delete(*, actor: Actor, company: Company) -> None:
    company = Company.objects.select_for_update().get(pk=company.pk)
    org_count = company.orgs.count()
    if org_count:
        raise ValidationError(
            f"{company.name} still has {org_count} org(s). Move them to another "
            "company first.",
            code="company_not_empty",
        )
    name = company.name
    audit_record(
        actor=actor,
        action="company.delete",
        company=company,
        summary=f"Deleted company {name}",
        before={"name": name},
    )
    company.delete()


@transaction.atomic
def rolegrant_create(
    *, actor: Actor, user: object, role: str, company: Company | None
) -> RoleGrant:
    grant = RoleGrant(user=user, role=role, company=company)
    grant.full_clean()
    grant.save()
    audit_record(
        actor=actor,
        action="role.grant",
        company=company,
        summary=f"Granted {grant.get_role_display()} to {grant.user}",
        after={"user": str(grant.user), "role": role},
    )
    return grant


@transaction.atomic
def rolegrant_delete(*, actor: Actor, grant: RoleGrant) -> None:
    audit_record(
        actor=actor,
        action="role.revoke",
        company=grant.company,
        summary=f"Removed {grant.get_role_display()} from {grant.user}",
        before={"user": str(grant.user), "role": grant.role},
    )
    grant.delete()


# --- sign-ins ---------------------------------------------------------------
# Password sign-ins, as the sign-in form sees them. Log in with Salesforce
# is audited by its own flow (``auth.salesforce_signin``).

SIGNIN_ACTION = "auth.password_signin"
LOCKOUT_ACTION = "auth.signin_lockout"


@dataclass(frozen=True)
class SignInAttemptActor(Actor):
    """Someone at the sign-in form who is not signed in, named by the
    username they typed (as Salesforce's Login History names failed
    logins), so the trail of one user shows the attempts on their name."""

    typed_username: str = ""

    @property
    def username(self) -> str:
        return self.typed_username or "anonymous"


def _printable(text: str, limit: int) -> str:
    return "".join(ch for ch in text if ch.isprintable())[:limit]


def _address(ip_address: str | None) -> str | None:
    """The client's address if it is one. Behind a proxy it comes from
    X-Forwarded-For, which the person signing in can write: garbage there
    must not fail the sign-in (PostgreSQL's inet column refuses it)."""
    try:
        validate_ipv46_address(ip_address or "")
    except ValidationError:
        return None
    return ip_address


@transaction.atomic
def signin_succeeded(*, user: Any, ip_address: str | None) -> AuditEvent:
    """The sign-in form accepted the user's password."""
    return audit_record(
        actor=Actor(user=user, ip_address=_address(ip_address)),
        action=SIGNIN_ACTION,
        summary=f"Signed in as {user.get_username()}",
        after={"method": "password", "username": user.get_username()},
    )


@transaction.atomic
def signin_failed(*, username: str, ip_address: str | None) -> AuditEvent:
    """A wrong username or password. The password is never recorded."""
    name = _printable(username, 150)
    return audit_record(
        actor=SignInAttemptActor(ip_address=_address(ip_address), typed_username=name),
        action=SIGNIN_ACTION,
        outcome=AuditEvent.Outcome.FAILURE,
        summary=f"Failed sign-in as {name or '(no username)'}",
        after={"method": "password", "username": name},
    )


@transaction.atomic
def signin_locked_out(
    *,
    username: str,
    ip_address: str | None,
    locked: list[str],
    rules: list[str] | None = None,
) -> AuditEvent:
    """The sign-in form refused to try: too many recent failures. ``locked``
    says on what ("username", "address" or both: the username at that
    address), ``rules`` which throttle rules refused (username_at_address,
    username, address)."""
    name = _printable(username, 150)
    after: dict[str, Any] = {"method": "password", "username": name, "locked": locked}
    if rules:
        after["rules"] = rules
    return audit_record(
        actor=SignInAttemptActor(ip_address=_address(ip_address), typed_username=name),
        action=LOCKOUT_ACTION,
        outcome=AuditEvent.Outcome.FAILURE,
        summary=f"Sign-in refused, locked out: {name or '(no username)'}",
        after=after,
    )
