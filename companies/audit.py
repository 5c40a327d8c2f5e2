"""Writing the audit trail.

Every service that changes companies, orgs, apps, policies or role grants
calls ``audit_record`` inside its own transaction, so the event commits or
rolls back with the change it describes.
"""

from __future__ import annotations

import csv
import ipaddress
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
    """The client's address, for the audit trail and the sign-in throttle.

    Behind a proxy (``VBSF_BEHIND_PROXY``) each proxy appends the address it
    saw to X-Forwarded-For, so only the last ``TRUSTED_PROXY_HOPS`` values
    were written by proxies we run; the one that many from the right is the
    client's. Anything further left is the client's own text. A value that
    is not an IP address (or a header too short) falls back to REMOTE_ADDR;
    IPv4-mapped IPv6 is given as IPv4, so one client has one address."""
    candidates = []
    if settings.TRUST_X_FORWARDED_FOR:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
        if len(forwarded) >= settings.TRUSTED_PROXY_HOPS:
            candidates.append(forwarded[-settings.TRUSTED_PROXY_HOPS].strip())
    candidates.append(str(request.META.get("REMOTE_ADDR", "")).strip())
    for candidate in candidates:
        try:
            address = ipaddress.ip_address(candidate)
        except ValueError:
            continue
        if getattr(address, "scope_id", None):  # fe80::1%eth0: no inet value
            continue
        return str(getattr(address, "ipv4_mapped", None) or address)
    return None


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
