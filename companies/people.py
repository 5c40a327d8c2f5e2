"""Console users (SPEC §10): invitations, roles per company, deactivation.

An Administrator invites someone by email; the invitee opens a one-time
link (``/invite/<token>/``, valid ``INVITATION_HOURS``) and sets a password
that Django's password validators accept. The invitation keeps the token's
SHA-256 hash; a task mails the link (no request waits on the mail server),
reading the token encrypted on the invitation and wiping it once sent.
Each write is one transaction with one audit event.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from vbsf import encryption
from vbsf.queue import enqueue_now, enqueue_on_commit

from . import signin_throttle
from .audit import Actor, audit_record
from .models import Company, ConsoleSession, Invitation, Role, RoleGrant

logger = logging.getLogger(__name__)
User = get_user_model()

# Unknown, spent or expired invitation links opened from one address: a
# guessing attempt (the token has 256 bits, so this bounds the noise).
INVITE_RULE = signin_throttle.Rule(
    "invite_address", ("address",), "INVITE_MAX_FAILURES_PER_ADDRESS"
)


@dataclass(frozen=True)
class Roles:
    """What a user may do: Administrator everywhere, or a role per company."""

    administrator: bool = False
    companies: dict[int, str] | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "administrator": self.administrator,
            "companies": {str(k): v for k, v in (self.companies or {}).items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Roles:
        return cls(
            administrator=bool(data.get("administrator")),
            companies={int(k): v for k, v in (data.get("companies") or {}).items()},
        )

    def described(self) -> dict[str, str]:
        """Company name -> role label, for audit rows and pages."""
        if self.administrator:
            return {"all companies": Role.ADMINISTRATOR.label}
        names = dict(
            Company.objects.filter(pk__in=list(self.companies or {})).values_list(
                "pk", "name"
            )
        )
        return {
            names[pk]: Role(role).label
            for pk, role in sorted((self.companies or {}).items())
            if pk in names
        }


def roles_of(user: AbstractBaseUser) -> Roles:
    grants = list(RoleGrant.objects.filter(user=user).values_list("role", "company"))
    if any(company is None for _, company in grants):
        return Roles(administrator=True, companies={})
    return Roles(companies={company: role for role, company in grants})


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _normalized_email(email: str) -> str:
    return email.strip().lower()


# --- invitations ------------------------------------------------------------


def users_invite(*, actor: Actor, email: str, roles: Roles) -> Invitation:
    """Invite ``email`` with ``roles``: a new one-time link, mailed by a task
    after commit. An earlier invitation to the same address that is still
    open is revoked."""
    email = _normalized_email(email)
    token = secrets.token_urlsafe(32)
    with transaction.atomic():
        if User.objects.filter(
            Q(username__iexact=email) | Q(email__iexact=email)
        ).exists():
            raise ValidationError(
                f"{email} already has a console user.", code="user_exists"
            )
        Invitation.objects.filter(
            email=email, used_at__isnull=True, revoked_at__isnull=True
        ).update(revoked_at=timezone.now(), token_encrypted="")
        invitation = Invitation.objects.create(
            email=email,
            roles=roles.as_json(),
            token_hash=token_hash(token),
            token_encrypted=encryption.encrypt(token),
            expires_at=timezone.now() + timedelta(hours=settings.INVITATION_HOURS),
            created_by=actor.user
            if actor.user and actor.user.is_authenticated
            else None,
        )
        audit_record(
            actor=actor,
            action="user.invite",
            summary=f"Invited {email}",
            after={"email": email, "roles": roles.described()},
        )
        enqueue_on_commit(INVITATION_MAIL_TASK, invitation_id=invitation.pk)
    return invitation


INVITATION_MAIL_TASK = "companies.tasks.send_invitation"


def invitation_mail_send(*, invitation_id: int) -> str:
    """The task: mail the link of an open invitation, then wipe its token.
    A refusal by the mail server is kept on the invitation for the Users
    page (the Administrator invites again, which revokes this link); a
    worker lost in between sends it again."""
    invitation = Invitation.objects.filter(pk=invitation_id).first()
    if invitation is None or not invitation.token_encrypted:
        return "skipped"
    if (
        invitation.used_at
        or invitation.revoked_at
        or invitation.expires_at <= timezone.now()
    ):
        Invitation.objects.filter(pk=invitation.pk).update(token_encrypted="")
        return "skipped"
    try:
        token = encryption.decrypt(invitation.token_encrypted)
    except encryption.SecretUnavailable:
        Invitation.objects.filter(pk=invitation.pk).update(
            token_encrypted="",
            mail_error="the console can no longer read this invitation's link "
            "(its encryption key is gone)",
        )
        return "failed"
    link = settings.PUBLIC_URL + reverse("invite", args=[token])
    hours = settings.INVITATION_HOURS
    try:
        send_mail(
            subject="[VBSF] You are invited to the Salesforce connection console",
            message=(
                "An Administrator invited you to the Salesforce connection "
                f"console.\n\nSet your password here (the link works once, "
                f"for {hours} hours):\n{link}\n\nYour user name is "
                f"{invitation.email}."
            ),
            from_email=settings.DEFAULT_FROM_EMAIL,
            recipient_list=[invitation.email],
        )
    except (OSError, ValueError) as exc:  # smtplib's errors are OSErrors
        logger.warning("invitation email to %s failed: %s", invitation.email, exc)
        Invitation.objects.filter(pk=invitation.pk).update(
            token_encrypted="", mail_error=str(exc)[:300] or type(exc).__name__
        )
        return "failed"
    Invitation.objects.filter(pk=invitation.pk).update(
        token_encrypted="", mailed_at=timezone.now(), mail_error=""
    )
    return "sent"


# An invitation still unmailed this long after it was made lost its task
# (a broker outage at commit, a worker gone): beat sends it again.
MAIL_RESEND_AFTER = timedelta(minutes=2)


def invitations_mail_resume() -> int:
    """Beat: send again the mail of open invitations whose task was lost,
    and wipe the token of invitations that ended (used, revoked, expired)
    before their mail went out. Returns how many were sent again."""
    now = timezone.now()
    holding = Invitation.objects.exclude(token_encrypted="")
    holding.filter(
        Q(used_at__isnull=False) | Q(revoked_at__isnull=False) | Q(expires_at__lte=now)
    ).update(token_encrypted="")
    lost = list(
        holding.filter(
            mailed_at__isnull=True,
            mail_error="",
            created_at__lt=now - MAIL_RESEND_AFTER,
        ).values_list("pk", flat=True)
    )
    for invitation_id in lost:
        enqueue_now(INVITATION_MAIL_TASK, invitation_id=invitation_id)
    return len(lost)


def invitation_for_token(token: str) -> Invitation | None:
    """The open invitation this token belongs to, or None (unknown, used,
    revoked or expired: the page says the same for each)."""
    return Invitation.objects.filter(
        token_hash=token_hash(token),
        used_at__isnull=True,
        revoked_at__isnull=True,
        expires_at__gt=timezone.now(),
    ).first()


def invitation_throttled(address: str | None) -> signin_throttle.Lockout | None:
    return signin_throttle.lockout("", address, rules=(INVITE_RULE,))


def invitation_link_failed(address: str | None) -> None:
    signin_throttle.record_failure("", address, rules=(INVITE_RULE,))


@transaction.atomic
def invitation_accept(
    *, invitation: Invitation, password: str, ip_address: str | None
) -> AbstractBaseUser:
    """Create the invitee's user with the invitation's roles. The link is
    spent at once; a second tab's submit finds it used."""
    spent = Invitation.objects.filter(
        pk=invitation.pk,
        used_at__isnull=True,
        revoked_at__isnull=True,
        expires_at__gt=timezone.now(),
    ).update(used_at=timezone.now())
    if not spent:
        raise ValidationError("This invitation link is no longer valid.")
    if User.objects.filter(username__iexact=invitation.email).exists():
        raise ValidationError(f"{invitation.email} already has a console user.")
    user = User(username=invitation.email, email=invitation.email)
    user.set_password(password)
    user.save()
    roles = Roles.from_json(invitation.roles)
    _grant(user, roles)
    Invitation.objects.filter(pk=invitation.pk).update(user=user)
    audit_record(
        actor=Actor(user=user, ip_address=ip_address),
        action="user.invite_accept",
        summary=f"{user.get_username()} accepted the invitation",
        after={"username": user.get_username(), "roles": roles.described()},
    )
    return user


@transaction.atomic
def invitation_revoke(*, actor: Actor, invitation: Invitation) -> bool:
    """Revoke an open invitation; False if it was used or revoked already."""
    revoked = Invitation.objects.filter(
        pk=invitation.pk, used_at__isnull=True, revoked_at__isnull=True
    ).update(revoked_at=timezone.now(), token_encrypted="")
    if revoked:
        audit_record(
            actor=actor,
            action="user.invite_revoke",
            summary=f"Revoked the invitation of {invitation.email}",
            before={"email": invitation.email},
        )
    return bool(revoked)


# --- roles and deactivation -------------------------------------------------


def _grant(user: AbstractBaseUser, roles: Roles) -> None:
    if roles.administrator:
        RoleGrant.objects.create(user=user, role=Role.ADMINISTRATOR, company=None)
        return
    companies = Company.objects.in_bulk(list(roles.companies or {}))
    RoleGrant.objects.bulk_create(
        RoleGrant(user=user, role=role, company=companies[pk])
        for pk, role in (roles.companies or {}).items()
        if pk in companies and role != Role.ADMINISTRATOR
    )


def _is_administrator(user: AbstractBaseUser) -> bool:
    return (
        bool(user.is_superuser)
        or RoleGrant.objects.filter(
            user=user, role=Role.ADMINISTRATOR, company__isnull=True
        ).exists()
    )


def _last_administrator(user: AbstractBaseUser) -> bool:
    """Whether no other active user would be an Administrator."""
    others = (
        User.objects.filter(is_active=True)
        .exclude(pk=user.pk)
        .filter(
            Q(is_superuser=True)
            | Q(role_grants__role=Role.ADMINISTRATOR, role_grants__company=None)
        )
    )
    return _is_administrator(user) and not others.exists()


@transaction.atomic
def user_roles_set(*, actor: Actor, user: AbstractBaseUser, roles: Roles) -> bool:
    """Replace the user's grants with ``roles``; False if nothing changed."""
    user = User.objects.select_for_update().get(pk=user.pk)
    before = roles_of(user)
    if before.as_json() == roles.as_json():
        return False
    if before.administrator and not roles.administrator and _last_administrator(user):
        raise ValidationError(
            f"{user.get_username()} is the last Administrator: make someone "
            "else an Administrator first.",
            code="last_administrator",
        )
    RoleGrant.objects.filter(user=user).delete()
    _grant(user, roles)
    audit_record(
        actor=actor,
        action="user.roles",
        summary=f"Changed the roles of {user.get_username()}",
        before={"username": user.get_username(), "roles": before.described()},
        after={"username": user.get_username(), "roles": roles.described()},
    )
    return True


def _end_sessions(user: AbstractBaseUser) -> int:
    """Delete the user's sessions, so they end now rather than at their
    next request's check (ModelBackend refuses inactive users there too),
    and a reactivated user does not find old sessions alive again."""
    ended, _ = ConsoleSession.objects.filter(user_id=user.pk).delete()
    return ended


@transaction.atomic
def user_deactivate(*, actor: Actor, user: AbstractBaseUser) -> int:
    """Deactivate the user and end their sessions; the number ended."""
    user = User.objects.select_for_update().get(pk=user.pk)
    if actor.user is not None and actor.user.pk == user.pk:
        raise ValidationError("You cannot deactivate yourself.", code="self")
    if not user.is_active:
        return 0
    if _last_administrator(user):
        raise ValidationError(
            f"{user.get_username()} is the last Administrator.",
            code="last_administrator",
        )
    user.is_active = False
    user.save(update_fields=["is_active"])
    ended = _end_sessions(user)
    audit_record(
        actor=actor,
        action="user.deactivate",
        summary=f"Deactivated {user.get_username()}",
        before={"username": user.get_username(), "active": True},
        after={"active": False, "sessions_ended": ended},
    )
    return ended


@transaction.atomic
def user_reactivate(*, actor: Actor, user: AbstractBaseUser) -> None:
    user = User.objects.select_for_update().get(pk=user.pk)
    if user.is_active:
        return
    user.is_active = True
    user.save(update_fields=["is_active"])
    audit_record(
        actor=actor,
        action="user.reactivate",
        summary=f"Reactivated {user.get_username()}",
        before={"username": user.get_username(), "active": False},
        after={"active": True},
    )
