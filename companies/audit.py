"""Writing the audit trail.

Every service that changes companies, orgs, apps, policies or role grants
calls ``audit_record`` inside its own transaction, so the event commits or
rolls back with the change it describes.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from .models import AuditEvent, Company

if TYPE_CHECKING:
    from orgs.models import SalesforceOrg


@dataclass(frozen=True)
class Actor:
    """Who made a change, and from which address."""

    user: Any = None  # a User, or None for the system (Celery, beat)
    ip_address: str | None = None

    @classmethod
    def from_request(cls, request: HttpRequest) -> Actor:
        return cls(user=request.user, ip_address=client_ip(request))

    @classmethod
    def system(cls) -> Actor:
        return cls()

    @property
    def username(self) -> str:
        if self.user is None or not self.user.is_authenticated:
            return "system"
        return self.user.get_username()


def client_ip(request: HttpRequest) -> str | None:
    if settings.TRUST_X_FORWARDED_FOR:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded:
            return forwarded.split(",")[0].strip() or None
    return request.META.get("REMOTE_ADDR") or None


def audit_record(
    *,
    actor: Actor,
    action: str,
    summary: str = "",
    company: Company | None = None,
    org: SalesforceOrg | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    outcome: str = AuditEvent.Outcome.SUCCESS,
) -> AuditEvent:
    """Append one audit event. Callers pass fingerprints, never secrets."""
    if not transaction.get_connection().in_atomic_block:
        # An event outside a transaction could survive a failed change.
        raise RuntimeError("audit_record must run inside the change's transaction")
    if company is None and org is not None:
        company = org.company
    user = (
        actor.user if actor.user is not None and actor.user.is_authenticated else None
    )
    return AuditEvent.objects.create(
        actor=user,
        actor_username=actor.username,
        ip_address=actor.ip_address,
        company=company,
        company_name=company.name if company else "",
        org=org,
        org_label=org.label if org else "",
        action=action,
        outcome=outcome,
        summary=summary[:300],
        before=before or {},
        after=after or {},
    )


AUDIT_CSV_HEADER = [
    "time",
    "user",
    "address",
    "company",
    "org",
    "action",
    "outcome",
    "summary",
    "before",
    "after",
]


class _Echo:
    def write(self, value: str) -> str:
        return value


def csv_safe(value: object) -> str:
    """Spreadsheet formula injection: a cell that starts with one of these
    would be evaluated by Excel or LibreOffice."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def json_cell(value: object) -> str:
    """Before/after as JSON a program can read back (not Python's repr,
    which is neither JSON nor stable): sorted keys, so equal values give
    equal cells, and non-ASCII as itself, the export being UTF-8."""
    return json.dumps(
        value if value is not None else {},
        sort_keys=True,
        ensure_ascii=False,
        default=str,
    )


def audit_csv_rows(events: Iterable[AuditEvent]) -> Iterator[str]:
    """The audit export, one CSV line at a time (streamed, any size).

    Times are ISO 8601 in the console's time zone, with their offset, as
    the audit page shows them."""
    writer = csv.writer(_Echo())
    yield writer.writerow(AUDIT_CSV_HEADER)
    iterate = getattr(events, "iterator", None)
    for e in iterate(chunk_size=1000) if iterate else events:
        row = (
            timezone.localtime(e.created_at).isoformat(),
            e.actor_username,
            e.ip_address,
            e.company_name,
            e.org_label,
            e.action,
            e.outcome,
            e.summary,
            json_cell(e.before),
            json_cell(e.after),
        )
        yield writer.writerow([csv_safe(v) for v in row])
