"""Create the demo data (idempotent) and the matching simulator fixture."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from companies.audit import Actor
from companies.models import Company, RoleGrant
from companies.services import company_create, rolegrant_create
from connections import demo
from connections.models import ExternalClientApp
from orgs.models import SalesforceOrg
from orgs.services import org_create


class Command(BaseCommand):
    help = "Seed demo companies, users, orgs and the simulator fixture."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--fixture",
            default=str(Path(settings.BASE_DIR) / "var" / "sfsim-demo.json"),
            help="Where to write the simulator fixture.",
        )

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        actor = Actor.system()
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
                app = ExternalClientApp(
                    name="VBSF shared connected app"
                    if d.shared_app
                    else f"{d.alias}-eca",
                    consumer_key=d.consumer_key,
                    scopes=["api", "refresh_token", "offline_access", "id", "openid"],
                    is_legacy_shared=d.shared_app,
                )
                app.set_consumer_secret(d.consumer_secret)
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
                granted_scopes=["api", "refresh_token", "id"],
                status=d.status,
                status_reason=d.status_reason,
            )
            SalesforceOrg.objects.filter(pk=org.pk).update(
                suggested_url=d.suggested_url,
                last_checked_at=timezone.now(),
            )

        callback = (
            settings.PUBLIC_URL + reverse("connections:oauth-callback")
            if _has_callback()
            else settings.PUBLIC_URL + "/oauth/callback/"
        )
        path = Path(options["fixture"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(demo.simulator_fixture(callback), indent=2))
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo ready: {Company.objects.count()} companies, "
                f"{SalesforceOrg.objects.count()} orgs; simulator fixture at {path}"
            )
        )


def _has_callback() -> bool:
    from django.urls import NoReverseMatch

    try:
        reverse("connections:oauth-callback")
    except NoReverseMatch:
        return False
    return True
