"""Create the demo data (idempotent) and the matching simulator fixture.

``--fleet N`` adds a realistic fleet of N orgs over 20 companies
(``connections.demo.fleet``) in bulk: a constant number of queries per
batch of orgs, never per org. Orgs that exist already are skipped, so a
second run adds nothing and a larger N adds only the missing orgs.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.db.models.functions import Lower
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from companies.access import AccessProfile
from companies.audit import Actor
from companies.models import AuditEvent, Company, RoleGrant
from companies.services import company_create, rolegrant_create
from connections import demo
from connections.models import Campaign, ConnectionChange, ExternalClientApp
from connections.salesforce.urls import normalize_org_url
from connections.services.campaigns import CampaignError, campaign_create
from orgs.models import BackupPolicy, ConnectionStatus, SalesforceOrg
from orgs.services import org_create, org_snapshot
from orgs.tokens import org_refresh_token_store

DEFAULT_BATCH_SIZE = 500


class Command(BaseCommand):
    help = "Seed demo companies, users, orgs and the simulator fixture."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--fixture",
            default=str(Path(settings.BASE_DIR) / "var" / "sfsim-demo.json"),
            help="Where to write the simulator fixture.",
        )
        parser.add_argument(
            "--fleet",
            type=int,
            default=0,
            metavar="N",
            help="Also add a fleet of N orgs over 20 companies (e.g. 1000).",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=DEFAULT_BATCH_SIZE,
            help="Fleet orgs written per batch.",
        )

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        size, batch_size = options["fleet"], options["batch_size"]
        if not 0 <= size <= demo.FLEET_MAX:
            raise CommandError(f"--fleet takes 0 to {demo.FLEET_MAX:,} orgs.")
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        actor = Actor.system()
        companies = self._seed_demo(actor)

        # The fixture keeps every fleet org already in the database, so a
        # plain `seed_demo` (as `make demo` runs it) does not drop them from
        # the simulator.
        existing = set(
            SalesforceOrg.objects.filter(
                org_id__startswith=demo.FLEET_ORG_ID_PREFIX
            ).values_list("org_id", flat=True)
        )
        known = [i for i in map(demo.fleet_index, existing) if i is not None]
        fleet = demo.fleet(max([size, *(i + 1 for i in known)]))
        if size:
            started = time.monotonic()
            created = self._seed_fleet(
                fleet[:size], existing, companies, actor, batch_size
            )
            elapsed = time.monotonic() - started
            if created:
                self.stdout.write(
                    f"Fleet: added {created} orgs over {len(demo.FLEET_COMPANIES)} "
                    f"companies in {elapsed:.1f} s; {size - created} existed already."
                )
            else:
                self.stdout.write(
                    f"Fleet: all {size} orgs exist already; nothing added."
                )

        path = Path(options["fixture"])
        path.parent.mkdir(parents=True, exist_ok=True)
        fixture = demo.simulator_fixture(_callback_url(), fleet)
        path.write_text(json.dumps(fixture, indent=None if fleet else 2))
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo ready: {Company.objects.count()} companies, "
                f"{SalesforceOrg.objects.count()} orgs; simulator fixture at {path}"
            )
        )

    def _seed_demo(self, actor: Actor) -> dict[str, Company]:
        """The small demo: a few companies, users of every role, an org in
        every status, through the services like any other change."""
        companies = {}
        for name, contacts in demo.COMPANIES.items():
            company = Company.objects.filter(name=name).first()
            companies[name] = company or company_create(
                actor=actor, name=name, contact_emails=contacts
            )

        User = get_user_model()
        for username, (role, company_names) in demo.USERS.items():
            user, created = User.objects.get_or_create(username=username)
            if created:
                user.set_password(demo.DEMO_PASSWORD)
                user.email = f"{username}@console.example"
                user.is_staff = user.is_superuser = role == "administrator"
                user.save()
            for company in (
                [companies[n] for n in company_names] if company_names else [None]
            ):
                if not RoleGrant.objects.filter(user=user, company=company).exists():
                    rolegrant_create(actor=actor, user=user, role=role, company=company)

        for d in demo.ORGS:
            if SalesforceOrg.objects.filter(org_id=d.org_id).exists():
                continue
            app = ExternalClientApp.objects.filter(consumer_key=d.consumer_key).first()
            if app is None:
                app = _client_app(d, is_legacy_shared=d.shared_app)
                app.save()
            org = org_create(
                actor=actor,
                org_id=d.org_id,
                alias=d.alias,
                org_type=d.org_type,
                login_url=d.console_url or d.url,
                instance_url=d.console_url or d.url,
                company=companies[d.company],
                client_app=app,
                refresh_token=d.refresh_token,
                connected_as_username=d.username,
                connected_as_user_id=d.user_id,
                granted_scopes=demo.SCOPES_GRANTED,
                status=d.status,
                status_reason=d.status_reason,
            )
            SalesforceOrg.objects.filter(pk=org.pk).update(
                suggested_url=d.suggested_url,
                last_checked_at=timezone.now(),
            )
            if d.status == "pending_activation":
                _stage_pending_change(d, org, actor)
        _seed_campaign()
        return companies

    def _seed_fleet(
        self,
        fleet: list[demo.FleetOrg],
        existing: set[str],
        companies: dict[str, Company],
        actor: Actor,
        batch_size: int,
    ) -> int:
        """Bulk-create the fleet orgs not in ``existing``; returns how many."""
        companies = {**companies, **_fleet_companies(actor)}
        shared = ExternalClientApp.objects.filter(
            consumer_key=demo.SHARED_APP_KEY
        ).first()
        if shared is None:
            spec = next(d for d in demo.ORGS if d.shared_app)
            shared = _client_app(spec, is_legacy_shared=True)
            shared.save()
        # Aliases are unique case-insensitively: one that is taken (say by
        # an org someone added by hand) gets a number.
        taken = set(
            SalesforceOrg.objects.annotate(key=Lower("alias")).values_list(
                "key", flat=True
            )
        )
        missing = [spec for spec in fleet if spec.org_id not in existing]
        for start in range(0, len(missing), batch_size):
            batch = missing[start : start + batch_size]
            _create_batch(batch, companies, shared, taken, actor)
        return len(missing)


def _stage_pending_change(d: demo.DemoOrg, org: SalesforceOrg, actor: Actor) -> None:
    """A staged change waiting for Salesforce, as Edit Connection leaves it.

    No probe is enqueued here (the demo's worker may not run yet): beat's
    safety net picks the change up and probes it without anyone clicking.
    """
    app = ExternalClientApp(
        name=f"{d.alias}-new-eca", consumer_key=d.pending_consumer_key
    )
    app.set_consumer_secret(d.pending_consumer_secret)
    app.save()
    now = timezone.now()
    ConnectionChange.objects.create(
        kind=ConnectionChange.Kind.EDIT,
        org=org,
        company=org.company,
        started_version=org.version,
        client_app=app,
        login_url=org.login_url,
        org_type=org.org_type,
        state=ConnectionChange.State.AWAITING_ACTIVATION,
        activation_started_at=now,
        next_probe_at=None,
    )


def _seed_campaign() -> None:
    """A re-authorization campaign over the demo orgs that need a person
    (SPEC §9), started by the Administrator; once."""
    grant = (
        RoleGrant.objects.filter(role="administrator", company=None)
        .select_related("user")
        .first()
    )
    if grant is None or Campaign.objects.exists():
        return
    needing = SalesforceOrg.objects.filter(
        status__in=[
            ConnectionStatus.NEEDS_REAUTHORIZATION,
            ConnectionStatus.FAILED,
        ]
    ).values_list("pk", flat=True)
    # CampaignError: no demo org needs re-authorization, so no campaign.
    with contextlib.suppress(CampaignError):
        campaign_create(
            actor=Actor(user=grant.user),
            access=AccessProfile(grant.user),
            org_ids=list(needing),
            name="Demo: re-authorize after the app rotation",
        )


def _callback_url() -> str:
    try:
        return settings.PUBLIC_URL + reverse("connections:oauth-callback")
    except NoReverseMatch:
        return settings.PUBLIC_URL + "/oauth/callback/"


def _client_app(spec: demo.DemoOrg, *, is_legacy_shared: bool) -> ExternalClientApp:
    app = ExternalClientApp(
        name=spec.app_name,
        consumer_key=spec.consumer_key,
        scopes=demo.APP_SCOPES,
        is_legacy_shared=is_legacy_shared,
    )
    app.set_consumer_secret(spec.consumer_secret)
    return app


def _fleet_companies(actor: Actor) -> dict[str, Company]:
    """The fleet's 20 companies, created (audited) where missing: a fixed
    number of queries whatever the size of the fleet."""
    found = {c.name: c for c in Company.objects.filter(name__in=demo.FLEET_COMPANIES)}
    for name, (_stem, contacts, _share) in demo.FLEET_COMPANIES.items():
        if name not in found:
            found[name] = company_create(
                actor=actor, name=name, contact_emails=contacts
            )
    return found


def _unique_alias(alias: str, taken: set[str]) -> str:
    candidate, n = alias, 1
    while candidate.lower() in taken:
        n += 1
        candidate = f"{alias}-{n}"
    taken.add(candidate.lower())
    return candidate


def _create_batch(
    batch: list[demo.FleetOrg],
    companies: dict[str, Company],
    shared: ExternalClientApp,
    taken: set[str],
    actor: Actor,
) -> None:
    """One batch: one lookup and four bulk inserts (apps, orgs, policies,
    audit events), whatever the batch's size."""
    now = timezone.now()
    own_keys = [spec.consumer_key for spec in batch if not spec.shared_app]
    apps = {
        app.consumer_key: app
        for app in ExternalClientApp.objects.filter(consumer_key__in=own_keys)
    }
    new_apps = [
        _client_app(spec, is_legacy_shared=False)
        for spec in batch
        if not spec.shared_app and spec.consumer_key not in apps
    ]
    apps.update(
        (app.consumer_key, app)
        for app in ExternalClientApp.objects.bulk_create(new_apps)
    )
    orgs = []
    for spec in batch:
        url = normalize_org_url(
            spec.console_url or spec.url, allow_legacy_instance=True
        )
        org = SalesforceOrg(
            alias=_unique_alias(spec.alias, taken),
            org_id=spec.org_id,
            org_type=spec.org_type,
            login_url=url,
            instance_url=url,
            company=companies[spec.company],
            client_app=shared if spec.shared_app else apps[spec.consumer_key],
            connected_as_username=spec.username,
            connected_as_user_id=spec.user_id,
            granted_scopes=demo.SCOPES_GRANTED,
            status=spec.status,
            status_reason=spec.status_reason,
            status_changed_at=now - timedelta(hours=spec.status_hours_ago),
            suggested_url=spec.suggested_url,
            last_checked_at=now - timedelta(minutes=spec.checked_minutes_ago),
        )
        # The one writer of stored refresh tokens; the batch saves the orgs.
        org_refresh_token_store(org=org, token=spec.refresh_token)
        orgs.append(org)
    orgs = SalesforceOrg.objects.bulk_create(orgs)
    if any(org.pk is None for org in orgs):  # a database without RETURNING
        pks = dict(
            SalesforceOrg.objects.filter(
                org_id__in=[org.org_id for org in orgs]
            ).values_list("org_id", "pk")
        )
        for org in orgs:
            org.pk = pks[org.org_id]
    BackupPolicy.objects.bulk_create(_policies(batch, orgs))
    AuditEvent.objects.bulk_create(
        AuditEvent(
            actor_username=actor.username,
            ip_address=actor.ip_address,
            company=org.company,
            company_name=org.company.name,
            org=org,
            org_label=org.label,
            action="org.create",
            summary=f"Added org {org.label} (demo fleet)",
            after=org_snapshot(org),
        )
        for org in orgs
    )


def _policies(
    batch: list[demo.FleetOrg], orgs: list[SalesforceOrg]
) -> Iterable[BackupPolicy]:
    for spec, org in zip(batch, orgs, strict=True):
        yield BackupPolicy(
            org=org,
            name=f"Backup of {org.label}",
            schedule=spec.schedule,
            enabled=spec.policy_enabled,
            include_files=spec.org_type == "production",
            retention_days=spec.retention_days,
            org_url=org.login_url,
            client_app=org.client_app,
        )
