"""Re-authorization campaigns (SPEC §9): a named set of orgs to re-authorize
by a deadline, one row per org. Rows move through pending → link_sent →
opened → connected (or failed, expired, skipped); a campaign closes when
every row is connected, skipped or expired."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import (
    BigIntegerField,
    CharField,
    DateTimeField,
    F,
    OuterRef,
    Subquery,
    Value,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from companies.access import AccessProfile, Capability
from companies.audit import Actor, audit_record
from orgs.models import SalesforceOrg

from ..models import Campaign, CampaignOrg

DEFAULT_DEADLINE = timedelta(days=7)
MAX_DEADLINE = timedelta(days=90)


class CampaignError(Exception):
    """A campaign action cannot go on; the message says why and what to do."""


def campaign_default_name(now: datetime | None = None) -> str:
    now = timezone.localtime(now or timezone.now())
    return f"Re-authorization {now:%Y-%m-%d}"


@transaction.atomic
def campaign_create(
    *,
    actor: Actor,
    access: AccessProfile,
    org_ids: Iterable[int],
    name: str = "",
    deadline: datetime | None = None,
    filter_query: str = "",
) -> tuple[Campaign, int]:
    """Create a campaign for the orgs the user may re-authorize
    (Capability.REAUTHORIZE) among ``org_ids``; returns (campaign, skipped
    count). Orgs without a client app cannot be re-authorized (Edit
    Connection sets one up) and are skipped too.

    A constant number of queries whatever the number of orgs: one read of
    the orgs, one insert each for the campaign, its rows (with the
    addresses remembered from earlier campaigns) and its companies, one
    audit event with the count and the filter.

    Raises ``CampaignError`` when no selected org can be re-authorized by
    the user or the deadline is not in the future.
    """
    now = timezone.now()
    wanted = {int(pk) for pk in org_ids}
    deadline = deadline or now + DEFAULT_DEADLINE
    if deadline <= now:
        raise CampaignError("Choose a deadline in the future.")
    if deadline > now + MAX_DEADLINE:
        raise CampaignError("Choose a deadline within 90 days.")
    name = (name or "").strip()[:120] or campaign_default_name(now)
    orgs = list(
        access.scope(SalesforceOrg.objects.all())
        .filter(access.company_q(Capability.REAUTHORIZE))
        .filter(pk__in=wanted, client_app__isnull=False)
        .order_by("pk")
        .values_list("pk", "company_id")
    )
    skipped = len(wanted) - len(orgs)
    if not orgs:
        raise CampaignError(
            "None of the selected orgs can be re-authorized by you: a campaign "
            "needs orgs of your companies that have a client app."
        )
    campaign = Campaign.objects.create(
        name=name,
        deadline=deadline,
        created_by=actor.user if actor.user and actor.user.is_authenticated else None,
    )
    campaign_rows_insert(campaign=campaign, org_ids=[pk for pk, _ in orgs], now=now)
    company_ids = sorted({company_pk for _, company_pk in orgs})
    Campaign.companies.through.objects.bulk_create(
        [
            Campaign.companies.through(campaign_id=campaign.pk, company_id=c)
            for c in company_ids
        ]
    )
    audit_record(
        actor=actor,
        action="campaign.create",
        summary=f"Campaign “{name}” for {len(orgs)} orgs"
        + (f", {skipped} skipped" if skipped else ""),
        after={
            "campaign": campaign.pk,
            "name": name,
            "orgs": len(orgs),
            "skipped": skipped,
            "companies": company_ids,
            "deadline": deadline.isoformat(),
            "filter": filter_query[:500],
        },
    )
    return campaign, skipped


def campaign_rows_insert(
    *, campaign: Campaign, org_ids: list[int], now: datetime
) -> None:
    """One row per org in ONE statement, ``INSERT … SELECT`` from the orgs.

    ``bulk_create`` would split 1,000 rows into batches under SQLite's
    parameter limit (one query per ~58 rows); selecting the rows from the
    orgs table keeps creation at a constant number of queries on every
    database. The SELECT is built by the ORM, so it stays portable; each
    row's address is the one typed last for that org in any campaign."""
    remembered = (
        CampaignOrg.objects.filter(org_id=OuterRef("pk"))
        .exclude(email="")
        .order_by("-pk")
        .values("email")[:1]
    )
    columns = {
        "campaign_id": Value(campaign.pk, output_field=BigIntegerField()),
        "org_id": F("pk"),
        "company_id": F("company_id"),
        "state": Value(CampaignOrg.State.PENDING, output_field=CharField()),
        "email": Coalesce(Subquery(remembered), Value(""), output_field=CharField()),
        "link_nonce": Value("", output_field=CharField()),
        "browser_binding": Value("", output_field=CharField()),
        "demo_mail_encrypted": Value("", output_field=CharField()),
        "connected_as_username": Value("", output_field=CharField()),
        "last_event": Value("Added to the campaign", output_field=CharField()),
        "last_event_at": Value(now, output_field=DateTimeField()),
        "updated_at": Value(now, output_field=DateTimeField()),
    }
    source = (
        SalesforceOrg.objects.filter(pk__in=org_ids)
        .order_by("pk")
        .annotate(**{f"row_{name}": value for name, value in columns.items()})
        .values_list(*[f"row_{name}" for name in columns])
    )
    select_sql, params = source.query.sql_with_params()
    table = connection.ops.quote_name(CampaignOrg._meta.db_table)
    names = ", ".join(connection.ops.quote_name(name) for name in columns)
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {table} ({names}) {select_sql}", params)
