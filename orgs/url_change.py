"""Edit organization URL: the new URL is proven by a task, with the org's
own tokens, before anything is saved.

``org_url_change_start`` validates and enqueues; the task runs
``url_verification_run``; beat's safety net runs ``url_verifications_resume``.
"""

from __future__ import annotations

from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from companies.audit import Actor, audit_record
from connections import salesforce
from connections.salesforce.urls import (
    InvalidSalesforceUrl,
    host_of,
    login_host_for,
    normalize_org_url,
)
from vbsf.queue import enqueue_now, enqueue_on_commit

from .health import PERMANENT
from .models import BackupPolicy, ConnectionStatus, SalesforceOrg, UrlVerification
from .services import org_locked, org_snapshot
from .tokens import org_access_token

State = UrlVerification.State


@transaction.atomic
def org_url_change_start(
    *, actor: Actor, org: SalesforceOrg, new_url: str
) -> UrlVerification:
    """Validate the URL, then let a task prove it before anything is saved."""
    try:
        normalized = normalize_org_url(new_url)
    except InvalidSalesforceUrl as exc:
        raise ValidationError({"new_url": str(exc)}) from None
    org = org_locked(org, None)
    if normalized == org.login_url and org.status != ConnectionStatus.URL_CHANGED:
        raise ValidationError({"new_url": "That is already the org's URL."})
    if org.url_verifications.filter(state=State.RUNNING).exists():
        raise ValidationError(
            {"new_url": "A check of a new URL is already running for this org."}
        )
    verification = UrlVerification.objects.create(
        org=org,
        requested_by=actor.user if actor.user and actor.user.is_authenticated else None,
        requested_from=actor.ip_address,
        new_url=normalized,
        started_version=org.version,
    )
    enqueue_on_commit("orgs.tasks.verify_org_url", verification_id=verification.pk)
    return verification


def url_verification_run(*, verification_id: int) -> str:
    """Check the new URL with the org's own tokens before saving anything."""
    verification = UrlVerification.objects.select_related("org").get(pk=verification_id)
    if verification.state != State.RUNNING:
        return "skipped"
    org = verification.org
    new_url = verification.new_url
    try:
        # Prove the host is this org's before anything is sent there: the
        # generic login host (Salesforce's own) answers the refresh with the
        # org's current instance. Only when that is the new URL do the org's
        # tokens go to it (the consumer secret and refresh token never do).
        tokens = org_access_token(org_id=org.pk, login_url=login_host_for(org.org_type))
        if host_of(tokens.instance_url) != host_of(new_url):
            return url_verification_refuse(
                verification_id,
                f"{new_url} is not this org's address: Salesforce says "
                f"{org.label} is at {tokens.instance_url}. Nothing was sent to "
                f"{host_of(new_url)}; check the URL in Salesforce Setup → My "
                "Domain.",
            )
        salesforce.check_org(
            instance_url=new_url,
            access_token=tokens.access_token,
            expected_org_id=org.org_id,
        )
    except salesforce.OrgMismatch as exc:
        return url_verification_refuse(
            verification_id,
            f"{new_url} belongs to another Salesforce org "
            f"({getattr(exc, 'actual_org_id', 'unknown')}), not {org.org_id}.",
        )
    except (salesforce.SessionInvalid, salesforce.InvalidGrant):
        return url_verification_refuse(
            verification_id,
            f"{new_url} answers, but not for this org: its tokens are not valid "
            "there. Check the URL, or re-authorize the connection.",
        )
    except salesforce.UnsafeUrl:
        return url_verification_refuse(
            verification_id, f"{new_url} is not a Salesforce host."
        )
    except salesforce.HostUnreachable:
        return url_verification_refuse(
            verification_id,
            f"{new_url} does not answer as a Salesforce org. Check the URL in "
            "Salesforce Setup → My Domain.",
        )
    except PERMANENT as exc:
        return url_verification_refuse(
            verification_id, salesforce.connection_problem(exc)
        )
    url_verification_apply(verification_id=verification_id)
    return "applied"


def url_verification_refuse(verification_id: int, message: str) -> str:
    UrlVerification.objects.filter(pk=verification_id).update(
        state=State.FAILED, message=message[:500], finished_at=timezone.now()
    )
    return "refused"


def url_verification_gave_up(*, verification_id: int, exc: BaseException) -> None:
    url_verification_refuse(
        verification_id,
        f"Salesforce did not answer at the new URL "
        f"({salesforce.connection_problem(exc)}). Nothing was changed; try again "
        "later.",
    )


@transaction.atomic
def url_verification_apply(*, verification_id: int) -> None:
    verification = UrlVerification.objects.select_for_update().get(pk=verification_id)
    if verification.state != State.RUNNING:
        return
    org = org_locked(verification.org, None)
    before = org_snapshot(org)
    now = timezone.now()
    org.login_url = verification.new_url
    org.instance_url = verification.new_url
    org.status = ConnectionStatus.CONNECTED
    org.status_reason = ""
    org.status_changed_at = now
    org.suggested_url = ""
    org.last_checked_at = now
    org.version += 1
    org.save()
    BackupPolicy.objects.filter(org=org).update(org_url=org.login_url)
    verification.state = State.SUCCEEDED
    verification.message = f"{org.label} now uses {org.login_url}."
    verification.finished_at = now
    verification.save()
    audit_record(
        actor=Actor(
            user=verification.requested_by, ip_address=verification.requested_from
        ),
        action="org.url_change",
        org=org,
        summary=f"Organization URL of {org.label} changed to {org.login_url}",
        before=before,
        after=org_snapshot(org),
    )


def url_verifications_resume() -> int:
    """Beat safety net: a verification whose message was lost is sent again
    (the run is idempotent); one that keeps getting lost ends refused."""
    now = timezone.now()
    running = UrlVerification.objects.filter(state=State.RUNNING)
    given_up = running.filter(created_at__lt=now - timedelta(minutes=30)).update(
        state=State.FAILED,
        message="The check was interrupted; nothing was changed. Apply again.",
        finished_at=now,
    )
    resent = 0
    for verification_id in running.filter(
        created_at__lt=now - timedelta(minutes=6)
    ).values_list("pk", flat=True):
        enqueue_now("orgs.tasks.verify_org_url", verification_id=verification_id)
        resent += 1
    return given_up + resent
