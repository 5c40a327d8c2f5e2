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
    Exists,
    F,
    OuterRef,
    Q,
    Subquery,
    Value,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from companies.access import AccessProfile, Capability
from companies.audit import Actor, audit_record
from orgs.models import SalesforceOrg

from ..models import Campaign, CampaignOrg, ConnectionChange
from .revocation import change_token_abandon

DEFAULT_DEADLINE = timedelta(days=7)
MAX_DEADLINE = timedelta(days=90)


class CampaignError(Exception):
    """A campaign action cannot go on; the message says why and what to do,
    ``field`` the form field it is about, if one is."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


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
    deadline_check(deadline, now)
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


def campaign_may_change(*, access: AccessProfile, campaign: Campaign) -> bool:
    """Whether the user may rename the campaign or move its deadline: only
    who may re-authorize in every company its orgs are in now (an
    Administrator, or an Operator of all of them): the deadline decides how
    long every row's link works. Read from the rows' orgs, not the companies
    recorded at creation, which an org moved since no longer matches."""
    if access.is_administrator:
        return True  # no need to read the companies
    if not access.can(Capability.REAUTHORIZE):
        return False
    company_ids = (
        CampaignOrg.objects.filter(campaign=campaign)
        .values_list("org__company_id", flat=True)
        .distinct()
    )
    return all(access.can(Capability.REAUTHORIZE, pk) for pk in company_ids)


def deadline_check(deadline: datetime, now: datetime) -> None:
    if deadline <= now:
        raise CampaignError("Choose a deadline in the future.", field="deadline")
    if deadline > now + MAX_DEADLINE:
        raise CampaignError("Choose a deadline within 90 days.", field="deadline")


@transaction.atomic
def campaign_update(
    *,
    actor: Actor,
    access: AccessProfile,
    campaign: Campaign,
    name: str,
    deadline: datetime,
) -> Campaign:
    """Rename the campaign or move its deadline (SPEC §9: "a named set of
    orgs to re-authorize by a deadline"). An open campaign only; a later
    deadline keeps unfinished rows' links working longer, an earlier one
    expires them sooner (beat), and rows that already expired stay expired.
    Audited with the values before and after; the same values change
    nothing."""
    campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
    if not campaign_may_change(access=access, campaign=campaign):
        raise CampaignError(
            "Only an Administrator, or an Operator of every company in the "
            "campaign, may change its name or deadline."
        )
    if campaign.is_closed:
        raise CampaignError("This campaign is closed: its name and deadline stay.")
    name = name.strip()
    if not name:
        raise CampaignError("Give the campaign a name.", field="name")
    if len(name) > 120:
        raise CampaignError("Keep the name within 120 characters.", field="name")
    if deadline == campaign.deadline.replace(second=0, microsecond=0):
        # The form works in whole minutes: the same minute keeps the stored
        # deadline (a rename alone moves nothing).
        deadline = campaign.deadline
    deadline_check(deadline, timezone.now())
    before = {"name": campaign.name, "deadline": campaign.deadline.isoformat()}
    after = {"name": name, "deadline": deadline.isoformat()}
    if before == after:
        return campaign
    campaign.name, campaign.deadline = name, deadline
    campaign.save(update_fields=["name", "deadline"])
    shown = {
        "name": lambda value: f"“{value}”",
        "deadline": lambda value: timezone.localtime(
            datetime.fromisoformat(value)
        ).strftime("%Y-%m-%d %H:%M"),
    }
    audit_record(
        actor=actor,
        action="campaign.update",
        summary=f"Campaign “{name}”: "
        + ", ".join(
            f"{key} {shown[key](before[key])} → {shown[key](after[key])}"
            for key in before
            if before[key] != after[key]
        ),
        before={"campaign": campaign.pk, **before},
        after={"campaign": campaign.pk, **after},
    )
    return campaign


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


# --- rows -------------------------------------------------------------------

UNFINISHED_STATES = (
    CampaignOrg.State.PENDING,
    CampaignOrg.State.LINK_SENT,
    CampaignOrg.State.OPENED,
    CampaignOrg.State.FAILED,
)
REMINDER_INTERVAL = timedelta(days=1)


def campaign_row_event(row: CampaignOrg, text: str, **fields: object) -> None:
    """Save the row with its last event (the campaign page shows it)."""
    row.last_event = text[:300]
    row.last_event_at = timezone.now()
    for name, value in fields.items():
        setattr(row, name, value)
    row.save()


def campaign_row_locked(row_id: int) -> CampaignOrg:
    """The row, locked for a row action after its change and its org: the
    order in which a re-authorization's apply takes them (change, org, then
    the org's rows). Taken the other way round, a Skip or a new link at the
    moment the link's login is applied would deadlock with it."""
    row = CampaignOrg.objects.filter(pk=row_id)
    changes = ConnectionChange.objects.filter(pk__in=row.values("change_id"))
    list(changes.select_for_update().values_list("pk", flat=True))
    orgs = SalesforceOrg.objects.filter(pk__in=row.values("org_id"))
    list(orgs.select_for_update().values_list("pk", flat=True))
    return (
        CampaignOrg.objects.select_for_update(of=("self",))
        .select_related("campaign", "org__company", "link_created_by")
        .get(pk=row_id)
    )


def campaign_row_login_abandon(row: CampaignOrg) -> None:
    """The row's link is revoked (skipped, expired, issued anew) while its
    person may still be at Salesforce: the login the link started ends, so
    the code that comes back is refused and nothing reaches the org, and a
    token it already got is revoked. A login the console user started
    ("Re-authorize now" binds no browser) goes on."""
    if row.change_id is None or not row.browser_binding:
        return
    change = (
        ConnectionChange.objects.select_for_update()
        .filter(pk=row.change_id, state__in=ConnectionChange.OPEN_STATES)
        .first()
    )
    if change is None:
        return
    change.state = ConnectionChange.State.ROLLED_BACK
    change.finished_at = timezone.now()
    change.code_encrypted = change.code_verifier_encrypted = ""
    change.save()
    change_token_abandon(change=change)


def campaign_row_check_open(row: CampaignOrg) -> None:
    """Actions need an unfinished row of an open campaign before its deadline."""
    if row.campaign.is_closed:
        raise CampaignError("This campaign is closed.")
    if row.is_finished:
        raise CampaignError(
            f"{row.org.label} is already {row.get_state_display().lower()} in "
            "this campaign."
        )
    if row.campaign.deadline <= timezone.now():
        raise CampaignError("The campaign's deadline has passed.")


@transaction.atomic
def campaign_row_skip(*, actor: Actor, row: CampaignOrg) -> CampaignOrg:
    """Skip: the row needs nothing more; its link stops working. Skipping a
    skipped row changes nothing."""
    row = campaign_row_locked(row.pk)
    if row.state == CampaignOrg.State.SKIPPED:
        return row
    campaign_row_check_open(row)
    campaign_row_login_abandon(row)
    campaign_row_event(
        row,
        f"Skipped by {actor.username}",
        state=CampaignOrg.State.SKIPPED,
        link_nonce="",
        browser_binding="",
    )
    audit_record(
        actor=actor,
        action="campaign.row_skip",
        org=row.org,
        summary=f"Skipped {row.org.label} in campaign “{row.campaign.name}”",
        after={"campaign": row.campaign_id, "row": row.pk},
    )
    campaign_close_if_done(campaign_id=row.campaign_id)
    return row


def campaign_rows_change_finished(
    *, change: ConnectionChange, org: SalesforceOrg | None = None
) -> None:
    """A re-authorization was applied (inside ``reauthorization_apply``'s
    transaction): rows linked to it, and unfinished rows of the same org in
    open campaigns, become connected as the new user; their links are used
    up. Audited with the link's creator, the Salesforce user and the address
    the person came from. ``org``: the change's org as the caller loaded it
    (with its company), not joined again to every row."""
    rows = CampaignOrg.objects.select_for_update(of=("self",)).select_related(
        "link_created_by"
    )
    if org is None:
        rows = rows.select_related("org__company")
    rows = list(
        rows.filter(
            Q(change_id=change.pk)
            | Q(
                org_id=change.org_id,
                state__in=UNFINISHED_STATES,
                campaign__closed_at__isnull=True,
            )
        ).exclude(state__in=CampaignOrg.FINISHED_STATES)
    )
    now = timezone.now()
    for row in rows:
        if org is not None and row.org_id == org.pk:
            row.org = org
        through_link = row.change_id == change.pk and bool(row.browser_binding)
        campaign_row_event(
            row,
            f"Connected as {change.new_username or change.new_user_id}"
            + (" through the link" if through_link else ""),
            state=CampaignOrg.State.CONNECTED,
            connected_as_username=change.new_username or change.new_user_id,
            change=change,
            link_nonce="",
            link_used_at=now if through_link else row.link_used_at,
        )
        if through_link:
            creator = row.link_created_by
            audit_record(
                actor=Actor(user=creator, ip_address=change.created_from),
                action="campaign.link_used",
                org=row.org,
                summary=f"Link from {creator.get_username() if creator else 'system'}"
                f" used by Salesforce user {change.new_username} from "
                f"{change.created_from or 'an unknown address'}",
                after={
                    "campaign": row.campaign_id,
                    "row": row.pk,
                    "link_created_by": creator.get_username() if creator else "",
                    "salesforce_user": change.new_username,
                    "address": change.created_from,
                },
            )
    for campaign_id in {row.campaign_id for row in rows}:
        campaign_close_if_done(campaign_id=campaign_id)


def campaign_rows_change_refused(*, change_id: int, message: str) -> None:
    """The login went wrong (wrong org, declined, Salesforce refused): the
    rows of that change are failed with the reason; a link stays usable in
    the same browser until the deadline."""
    rows = CampaignOrg.objects.select_for_update().filter(
        change_id=change_id, state__in=UNFINISHED_STATES
    )
    for row in rows:
        campaign_row_event(row, message, state=CampaignOrg.State.FAILED)


def campaign_close_if_done(*, campaign_id: int) -> None:
    """Close the campaign once every row is connected, skipped or expired:
    once the caller's transaction commits (at once outside one).

    One UPDATE whose condition is that no row is open, run after the commit,
    needs no lock: of two rows finishing at once, the one committed last
    sees both finished and closes the campaign. Locking the campaign inside
    the callers' transactions instead made every link of a campaign wait for
    the others' whole apply. Beat's ``campaigns_expire`` closes any campaign
    missed all the same (a worker killed between commit and close)."""

    def close() -> None:
        open_rows = CampaignOrg.objects.filter(campaign_id=OuterRef("pk")).exclude(
            state__in=CampaignOrg.FINISHED_STATES
        )
        Campaign.objects.filter(pk=campaign_id, closed_at__isnull=True).exclude(
            Exists(open_rows)
        ).update(closed_at=timezone.now())

    transaction.on_commit(close)


# --- beat -------------------------------------------------------------------


def campaigns_expire() -> int:
    """Beat: rows of campaigns past their deadline expire (their links stop
    working); campaigns with every row finished close. Idempotent."""
    now = timezone.now()
    expired = 0
    for campaign in Campaign.objects.filter(closed_at__isnull=True).order_by("pk"):
        with transaction.atomic():
            if campaign.deadline <= now:
                unfinished = CampaignOrg.objects.filter(
                    campaign=campaign, state__in=UNFINISHED_STATES
                )
                for row in unfinished.exclude(browser_binding="").exclude(
                    change__isnull=True
                ):
                    campaign_row_login_abandon(row)
                expired_rows = unfinished.update(
                    state=CampaignOrg.State.EXPIRED,
                    link_nonce="",
                    browser_binding="",
                    last_event="Expired at the deadline",
                    last_event_at=now,
                    updated_at=now,
                )
                if expired_rows:
                    expired += expired_rows
                    audit_record(
                        actor=Actor.system(),
                        action="campaign.expire",
                        summary=f"Campaign “{campaign.name}”: {expired_rows} orgs "
                        "expired at the deadline",
                        after={"campaign": campaign.pk, "expired": expired_rows},
                    )
            campaign_close_if_done(campaign_id=campaign.pk)
    return expired
