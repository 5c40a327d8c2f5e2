"""Connection alerts: one message per incident, one when it is over.

An incident opens when orgs of a company fail and closes when none does.
Orgs failing or recovering in between change nothing for the contacts, so
a flapping fleet cannot flood their inbox. The messages go out on the
company's channels (email recipients, webhook) through
``companies.notifications``, which retries and logs each delivery.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from companies.models import Company, Incident, NotificationDelivery
from companies.notifications import incident_notify

from .health import FAILING
from .models import SalesforceOrg

logger = logging.getLogger(__name__)


def alerts_evaluate(*, company_id: int) -> str:
    company = Company.objects.get(pk=company_id)
    failing = list(
        SalesforceOrg.objects.filter(company=company, status__in=FAILING)
        .order_by("alias")
        .values("id", "alias", "org_id", "status", "status_reason")
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


def _org_entries(failing: list[dict]) -> list[dict]:
    """The failing orgs as notifications name them, with console links."""
    return [
        {
            "alias": o["alias"],
            "org_id": o["org_id"],
            "status": o["status"],
            "reason": o["status_reason"] or o["status"],
            "url": settings.PUBLIC_URL + reverse("orgs:detail", args=[o["id"]]),
        }
        for o in failing
    ]


def _notify_open(company: Company, incident: Incident, failing: list[dict]) -> None:
    incident_notify(
        incident=incident,
        event=NotificationDelivery.Event.OPENED,
        orgs=_org_entries(failing),
    )
    Incident.objects.filter(pk=incident.pk).update(opened_notified_at=timezone.now())


def _notify_closed(company: Company, incident: Incident) -> None:
    incident_notify(
        incident=Incident.objects.select_related("company").get(pk=incident.pk),
        event=NotificationDelivery.Event.CLOSED,
        orgs=[],
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
