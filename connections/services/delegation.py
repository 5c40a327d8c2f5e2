"""Delegated re-authorization links (SPEC §9): ``/r/<token>/``.

A link is Django's signing (a purpose salt) over the campaign row and the
row's ``link_nonce``; the token itself is never stored, logged, audited or
put in a Celery message (the mail task signs it itself). Clearing the nonce
(used, skipped, expired) revokes every link issued for the row. The first
browser that presses "Log in with Salesforce" claims the link: the row keeps
a hash of a random value in that browser's session, and any other browser
gets the invalid-link page.

The login then runs through the same services as Re-authorize connection
(``reauthorization_start``, the one callback, the exchange task with its
org-ID guard, ``reauthorization_apply`` and its permission check); the
campaign hooks in ``campaigns`` turn the change's outcome into the row's.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from datetime import timedelta

from django.conf import settings
from django.core import signing
from django.core.mail import EmailMessage
from django.db import transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from companies.audit import Actor, audit_record
from connections import salesforce
from vbsf import encryption
from vbsf.queue import enqueue_on_commit
from vbsf.ratelimit import address_allowed

from ..models import CampaignOrg, ConnectionChange
from ..permissions import REQUIRED_PERMISSIONS
from .campaigns import (
    MAX_DEADLINE,
    REMINDER_INTERVAL,
    UNFINISHED_STATES,
    CampaignError,
    campaign_row_check_open,
    campaign_row_event,
    campaign_row_locked,
    campaign_row_login_abandon,
)
from .changes import ChangeError, OrgUrlMoved
from .reauthorization import reauthorization_start

logger = logging.getLogger(__name__)

LINK_SALT = "vbsf.campaign-link"
# Requests to /r/<token>/ from one address per window, valid or not: enough
# for a person, far too few to guess a signed token.
LINK_REQUESTS_PER_ADDRESS = 30
LINK_REQUESTS_WINDOW_SECONDS = 60
# "Send link" again to the same address sooner than this is a double click.
RESEND_AFTER = timedelta(seconds=30)
# Mail backends that deliver nothing: the demo shows their mail on the page.
LOCAL_MAIL_BACKENDS = (
    "django.core.mail.backends.console.EmailBackend",
    "django.core.mail.backends.filebased.EmailBackend",
    "django.core.mail.backends.locmem.EmailBackend",
)


class LinkInvalid(Exception):
    """Used, expired, revoked, tampered, or its campaign closed: the person
    sees only "This link is no longer valid"."""


# --- signing ----------------------------------------------------------------


def link_token(row: CampaignOrg) -> str:
    if not row.link_nonce:
        raise LinkInvalid
    return signing.TimestampSigner(salt=LINK_SALT).sign(f"{row.pk}:{row.link_nonce}")


def link_url(row: CampaignOrg) -> str:
    return settings.PUBLIC_URL + reverse(
        "delegated:landing", kwargs={"token": link_token(row)}
    )


def link_row(token: str, *, lock: bool = False) -> CampaignOrg:
    """The row a valid link stands for; ``LinkInvalid`` otherwise."""
    try:
        value = signing.TimestampSigner(salt=LINK_SALT).unsign(
            token[:200], max_age=MAX_DEADLINE
        )
        pk_text, nonce = value.split(":", 1)
        pk = int(pk_text)
    except (signing.BadSignature, ValueError):
        raise LinkInvalid from None
    rows = CampaignOrg.objects.select_related(
        "campaign", "org__company", "link_created_by"
    )
    if lock:
        rows = rows.select_for_update(of=("self",))
    row = rows.filter(pk=pk).first()
    if (
        row is None
        or not row.link_nonce
        or not hmac.compare_digest(row.link_nonce, nonce)
        or row.is_finished
        or row.campaign.is_closed
        or row.campaign.deadline <= timezone.now()
    ):
        raise LinkInvalid
    return row


def link_request_allowed(*, address: str | None) -> bool:
    """At most LINK_REQUESTS_PER_ADDRESS link requests a minute from one
    address, valid or not (guessing tokens counts)."""
    return address_allowed(
        "link-requests",
        address=address,
        limit=LINK_REQUESTS_PER_ADDRESS,
        window_seconds=LINK_REQUESTS_WINDOW_SECONDS,
    )


def browser_binding(browser_secret: str) -> str:
    """What the row keeps of the browser: a hash of its session's secret."""
    return hashlib.sha256(f"{LINK_SALT}:{browser_secret}".encode()).hexdigest()


def new_browser_secret() -> str:
    return secrets.token_urlsafe(32)


# --- issuing links (console users with REAUTHORIZE on the row) -------------


def link_issue(row: CampaignOrg, actor: Actor) -> None:
    """Give the row a nonce if it has none; the issuer becomes the link's
    creator. Issuing again keeps the nonce, so links copied or sent earlier
    keep working, unless a browser has claimed the link (say its login
    failed and the link goes to someone else now): then the earlier link is
    revoked and the new one works in any browser, once."""
    if not row.link_nonce or row.browser_binding:
        campaign_row_login_abandon(row)
        if row.browser_binding:
            # The abandoned login's outcome (say a declined callback) no
            # longer speaks for the row; the new link's opening is its own.
            row.change = None
            row.link_opened_at = None
        row.link_nonce = secrets.token_hex(16)
        row.browser_binding = ""
    row.link_created_by = (
        actor.user if actor.user and actor.user.is_authenticated else None
    )


@transaction.atomic
def campaign_row_link_copy(*, actor: Actor, row: CampaignOrg) -> str:
    """ "Copy link": the link, shown once to the user who asked for it."""
    row = campaign_row_locked(row.pk)
    campaign_row_check_open(row)
    link_issue(row, actor)
    campaign_row_event(
        row,
        f"Link copied by {actor.username}",
        state=CampaignOrg.State.LINK_SENT
        if row.state == CampaignOrg.State.PENDING
        else row.state,
    )
    audit_record(
        actor=actor,
        action="campaign.link_copy",
        org=row.org,
        summary=f"Copied the re-authorization link of {row.org.label}",
        after={"campaign": row.campaign_id, "row": row.pk},
    )
    return link_url(row)


@transaction.atomic
def campaign_row_link_send(
    *, actor: Actor, row: CampaignOrg, email: str
) -> CampaignOrg:
    """ "Send link": remember the address and mail the link (a task). The
    same link sent to the same address a moment ago (a double click) is not
    sent twice."""
    row = campaign_row_locked(row.pk)
    campaign_row_check_open(row)
    now = timezone.now()
    if (
        row.email == email
        and row.link_nonce
        and not row.browser_binding
        and row.link_sent_at
        and now - row.link_sent_at < RESEND_AFTER
    ):
        return row
    link_issue(row, actor)
    new_state = (
        CampaignOrg.State.LINK_SENT
        if row.state in (CampaignOrg.State.PENDING, CampaignOrg.State.LINK_SENT)
        else row.state
    )
    campaign_row_event(
        row,
        f"Link sent to {email} by {actor.username}",
        email=email,
        state=new_state,
        link_sent_at=now,
        reminded_at=None,
    )
    audit_record(
        actor=actor,
        action="campaign.link_send",
        org=row.org,
        summary=f"Sent the re-authorization link of {row.org.label} to {email}",
        after={"campaign": row.campaign_id, "row": row.pk, "email": email},
    )
    enqueue_on_commit(
        "connections.tasks.send_campaign_link", row_id=row.pk, reminder=False
    )
    return row


def campaign_link_mail(row: CampaignOrg, *, reminder: bool) -> EmailMessage:
    org = row.org
    subject = (
        f"Reminder: re-authorize the backup connection of {org.label}"
        if reminder
        else f"Re-authorize the backup connection of {org.label}"
    )
    creator = (
        row.link_created_by.get_username()
        if row.link_created_by
        else "An administrator"
    )
    deadline = timezone.localtime(row.campaign.deadline)
    needed = ", ".join(p.label for p in REQUIRED_PERMISSIONS)
    body = (
        f"{creator} asks you to log in to Salesforce so that backups of "
        f"{org.label} (org ID {org.org_id}, {org.company.name}) keep running.\n\n"
        f"Open this link and choose “Log in with Salesforce”:\n{link_url(row)}\n\n"
        "Log in as a user with a full Salesforce license (not a Salesforce "
        f"Integration license) and these permissions: {needed}. The link "
        f"works once, in one browser, until {deadline:%Y-%m-%d %H:%M %Z}.\n"
    )
    return EmailMessage(subject=subject, body=body, to=[row.email])


def campaign_link_mail_send(*, row_id: int, reminder: bool) -> str:
    """The task's work: sign the link and mail it. A row that no longer has
    a link (used, skipped, expired) gets no mail."""
    row = (
        CampaignOrg.objects.select_related(
            "campaign", "org__company", "link_created_by"
        )
        .filter(pk=row_id)
        .first()
    )
    if row is None or not row.email:
        return "skipped"
    try:
        link_row(link_token(row))
    except LinkInvalid:
        return "skipped"
    message = campaign_link_mail(row, reminder=reminder)
    message.send()
    with transaction.atomic():
        fields: dict[str, object] = {}
        if settings.EMAIL_BACKEND in LOCAL_MAIL_BACKENDS:
            fields["demo_mail_encrypted"] = encryption.encrypt(
                f"To: {row.email}\nSubject: {message.subject}\n\n{message.body}"
            )
        if reminder:
            fields["reminded_at"] = timezone.now()
            audit_record(
                actor=Actor.system(),
                action="campaign.link_remind",
                org=row.org,
                summary=f"Reminded {row.email} to re-authorize {row.org.label}",
                after={"campaign": row.campaign_id, "row": row.pk, "email": row.email},
            )
        if fields:
            CampaignOrg.objects.filter(pk=row.pk).update(**fields)
    return "sent"


def campaign_demo_mail(row: CampaignOrg) -> str:
    """The last mail of the row, for the demo's campaign page ('' if none)."""
    if not row.demo_mail_encrypted:
        return ""
    try:
        return encryption.decrypt(row.demo_mail_encrypted)
    except encryption.SecretUnavailable:
        return ""


def campaigns_remind() -> list[int]:
    """Beat: at most one reminder a day per unfinished row with a sent link,
    before the deadline. Rows are marked reminded here, in one update, so a
    second beat run in the same day finds nothing (idempotent)."""
    now = timezone.now()
    since = now - REMINDER_INTERVAL
    due = (
        CampaignOrg.objects.filter(
            campaign__closed_at__isnull=True,
            campaign__deadline__gt=now,
            state__in=UNFINISHED_STATES,
            link_sent_at__lte=since,
        )
        .exclude(link_nonce="")
        .exclude(email="")
        .filter(Q(reminded_at__isnull=True) | Q(reminded_at__lte=since))
    )
    with transaction.atomic():
        row_ids = list(due.select_for_update().values_list("pk", flat=True))
        CampaignOrg.objects.filter(pk__in=row_ids).update(reminded_at=now)
        for row_id in row_ids:
            enqueue_on_commit(
                "connections.tasks.send_campaign_link", row_id=row_id, reminder=True
            )
    return row_ids


# --- the person with the link -------------------------------------------------


@transaction.atomic
def delegated_link_open(
    *, token: str, address: str | None, browser_secret: str
) -> CampaignOrg:
    """GET of the landing page: the row, marked opened the first time.
    A link claimed by another browser is invalid here."""
    row = link_row(token, lock=True)
    if row.browser_binding and not (
        browser_secret
        and hmac.compare_digest(row.browser_binding, browser_binding(browser_secret))
    ):
        raise LinkInvalid
    if row.link_opened_at is None:
        fields: dict[str, object] = {"link_opened_at": timezone.now()}
        if row.state in (CampaignOrg.State.PENDING, CampaignOrg.State.LINK_SENT):
            fields["state"] = CampaignOrg.State.OPENED
        campaign_row_event(
            row, f"Link opened from {address or 'an unknown address'}", **fields
        )
        audit_record(
            actor=Actor(user=row.link_created_by, ip_address=address),
            action="campaign.link_open",
            org=row.org,
            summary=f"The re-authorization link of {row.org.label} was opened",
            after={
                "campaign": row.campaign_id,
                "row": row.pk,
                "link_created_by": row.link_created_by.get_username()
                if row.link_created_by
                else "",
                "address": address,
            },
        )
    return row


LINK_URL_MOVED = (
    "This org's address at Salesforce changed, and the console has not been "
    "updated yet, so the login cannot start. Tell the person who sent you this "
    "link; it works again once they have updated it."
)


@transaction.atomic
def delegated_login_start(
    *, row_id: int, address: str | None, browser_secret: str
) -> tuple[ConnectionChange, salesforce.AuthorizationRequest]:
    """ "Log in with Salesforce" through a link (its token already checked by
    ``link_row``, or the row claimed by this browser on a retry): claim the
    row for this browser and start the same re-authorization as the org
    page's, in the name of the link's creator from the person's address."""
    row = campaign_row_locked(row_id)
    binding = browser_binding(browser_secret)
    if (
        not row.link_nonce
        or row.is_finished
        or row.campaign.is_closed
        or row.campaign.deadline <= timezone.now()
        or (
            row.browser_binding
            and not hmac.compare_digest(row.browser_binding, binding)
        )
    ):
        raise LinkInvalid
    try:
        change, auth = reauthorization_start(
            actor=Actor(user=row.link_created_by, ip_address=address), org=row.org
        )
    except OrgUrlMoved:
        # The person sees nothing of the console (SPEC §9): no URLs, no
        # console pages, only what to do.
        raise CampaignError(LINK_URL_MOVED) from None
    except ChangeError as exc:
        raise CampaignError(str(exc)) from None
    state = (
        row.state if row.state == CampaignOrg.State.OPENED else CampaignOrg.State.OPENED
    )
    campaign_row_event(
        row,
        "Logging in at Salesforce through the link",
        browser_binding=binding,
        change=change,
        state=state,
        link_opened_at=row.link_opened_at or timezone.now(),
    )
    return change, auth


def delegated_row_for_browser(
    *, row_id: int, browser_secret: str
) -> CampaignOrg | None:
    """The row this browser claimed (for the result page), or None."""
    if not browser_secret:
        return None
    row = (
        CampaignOrg.objects.select_related("campaign", "org__company", "change")
        .filter(pk=row_id)
        .first()
    )
    if row is None or not row.browser_binding:
        return None
    if not hmac.compare_digest(row.browser_binding, browser_binding(browser_secret)):
        return None
    return row


def delegated_row_retry_allowed(row: CampaignOrg) -> bool:
    return (
        row.state in UNFINISHED_STATES
        and bool(row.link_nonce)
        and not row.campaign.is_closed
        and row.campaign.deadline > timezone.now()
    )


# --- "Re-authorize now" (the console user logs in himself) -----------------


@transaction.atomic
def campaign_row_reauthorize_start(
    *, actor: Actor, row: CampaignOrg
) -> tuple[ConnectionChange, salesforce.AuthorizationRequest]:
    row = campaign_row_locked(row.pk)
    campaign_row_check_open(row)
    try:
        change, auth = reauthorization_start(actor=actor, org=row.org)
    except ChangeError as exc:
        raise CampaignError(str(exc)) from None
    # The console user takes over: a browser that claimed the link no
    # longer holds it (the link itself stays valid until the row finishes).
    campaign_row_event(
        row,
        f"{actor.username} is logging in at Salesforce",
        change=change,
        browser_binding="",
    )
    return change, auth
