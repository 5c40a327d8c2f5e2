"""Connection alerts: one email per incident, one when it is over.

An incident opens when orgs of a company fail and closes when none does.
Orgs failing or recovering in between change nothing for the contacts, so
a flapping fleet cannot flood their inbox.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from companies.models import Company, Incident

from .health import FAILING
from .models import SalesforceOrg

logger = logging.getLogger(__name__)


def company_contacts(company: Company) -> list[str]:
    return [e.strip() for e in company.contact_emails.split(",") if e.strip()]


def alerts_evaluate(*, company_id: int) -> str:
    company = Company.objects.get(pk=company_id)
    failing = list(
        SalesforceOrg.objects.filter(company=company, status__in=FAILING)
        .order_by("alias")
        .values("alias", "org_id", "status", "status_reason")
    )
    open_incident = Incident.objects.filter(
        company=company, closed_at__isnull=True
    ).first()
    if failing and open_incident is None:
        try:
            with transaction.atomic():
                incident = Incident.objects.create(
                    company=company, failing_orgs=failing
                )
        except IntegrityError:
            return "already-open"  # another worker opened it first
        _notify_open(company, incident, failing)
        return "opened"
    if failing and open_incident is not None:
        Incident.objects.filter(pk=open_incident.pk).update(failing_orgs=failing)
        return "ongoing"
    if not failing and open_incident is not None:
        closed = Incident.objects.filter(
            pk=open_incident.pk, closed_at__isnull=True
        ).update(closed_at=timezone.now())
        if closed:
            _notify_closed(company, open_incident)
            return "closed"
    return "quiet"


def _notify_open(company: Company, incident: Incident, failing: list[dict]) -> None:
    recipients = company_contacts(company)
    if recipients:
        lines = [
            f"- {o['alias'] or o['org_id']}: {o['status_reason'] or o['status']}"
            for o in failing
        ]
        send_mail(
            subject=f"[VBSF] {len(failing)} Salesforce org(s) of {company.name} "
            "need attention",
            message=(
                f"These orgs of {company.name} cannot be backed up right now:\n\n"
                + "\n".join(lines)
                + f"\n\nOpen the console to fix them: {settings.PUBLIC_URL}/orgs/queue/"
                "\n\nYou get one more email when they are all connected again."
            ),
            from_email=settings.DEFAULT_FROM_EMAIL,
            recipient_list=recipients,
        )
    Incident.objects.filter(pk=incident.pk).update(opened_notified_at=timezone.now())


def _notify_closed(company: Company, incident: Incident) -> None:
    recipients = company_contacts(company)
    if recipients:
        send_mail(
            subject=f"[VBSF] Salesforce orgs of {company.name} are connected again",
            message=(
                f"Every Salesforce org of {company.name} is connected again "
                f"(incident opened {incident.opened_at:%Y-%m-%d %H:%M} UTC)."
            ),
            from_email=settings.DEFAULT_FROM_EMAIL,
            recipient_list=recipients,
        )
    Incident.objects.filter(pk=incident.pk).update(closed_notified_at=timezone.now())


def alerts_evaluate_all() -> int:
    ids = set(
        SalesforceOrg.objects.filter(status__in=FAILING).values_list(
            "company_id", flat=True
        )
    ) | set(
        Incident.objects.filter(closed_at__isnull=True).values_list(
            "company_id", flat=True
        )
    )
    for company_id in ids:
        alerts_evaluate(company_id=company_id)
    return len(ids)
