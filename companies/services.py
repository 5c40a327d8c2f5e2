"""Writes for companies and role grants. Each runs in one transaction
and records exactly one audit event."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction

from .audit import Actor, audit_record
from .models import Company, RoleGrant


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
