"""The role × page matrix, generated from the URL configuration.

Every named URL must have a rule here; a new URL without one fails the
suite, so no page ships without someone deciding who may see it.
"""

from __future__ import annotations

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

ALL = {"administrator", "operator", "support", "viewer"}
ADMIN_ONLY = {"administrator"}

# url name -> roles that get 200 on GET (others 403). "public" means no
# sign-in needed; "skip-get" marks POST-only endpoints (checked below).
GET_RULES: dict[str, set[str] | str] = {
    "dashboard": ALL,
    "login": "public",
    "logout": "post-only",
    "healthz": "public",
    # Prometheus: 404 unless VBSF_METRICS_TOKEN is set (tests/test_metrics.py).
    "metrics": "no-provider",
    "orgs:list": ALL,
    "orgs:detail": ALL,
    "orgs:live": ALL,
    "orgs:row": ALL,
    "policies:list": ALL,
    "companies:list": ADMIN_ONLY,
    "companies:detail": ADMIN_ONLY,
    "companies:move-orgs": "post-only",
    "companies:delete": "post-only",
    "audit": ADMIN_ONLY,
    "audit-export": ADMIN_ONLY,
    "orgs:add": ADMIN_ONLY,
    "orgs:edit-connection": ADMIN_ONLY,
    "orgs:add-step": ADMIN_ONLY,
    "orgs:edit-connection-step": ADMIN_ONLY,
    "orgs:settings": "post-only",
    "orgs:verify-permissions": "post-only",
    "policies:edit": ADMIN_ONLY,
    "connections:authorize": "post-only",
    "connections:oauth-callback": "callback",
    "connections:change-status": ALL,
    "connections:check-status": ALL,
    "orgs:queue": {"administrator", "operator", "support"},
    "orgs:reauthorize": "post-only",
    "orgs:edit-url": {"administrator", "support"},
    "orgs:url-status": ALL,
    "orgs:check": "post-only",
    # Sign-in with Salesforce: 404 while no org is the sign-in provider, as
    # in this fixture; tested with one in tests/integration.
    "connections:signin-start": "post-only",
    "connections:signin-wait": "no-provider",
    # Campaigns (SPEC §9): read by every role of the campaign's companies;
    # row actions by POST (roles in CAMPAIGN_ROW_ACTIONS below).
    "campaigns:list": ALL,
    "campaigns:detail": ALL,
    "campaigns:live": ALL,
    "campaigns:row-reauthorize": "post-only",
    "campaigns:row-send-link": "post-only",
    "campaigns:row-copy-link": "post-only",
    "campaigns:row-skip": "post-only",
    "campaigns:settings": "post-only",
    # A delegated link needs no sign-in; a link that is not valid (here, a
    # made-up one) answers the plain invalid-link page with 410 for anyone.
    "delegated:landing": "link",
    "delegated:result": "link",
    "delegated:retry": "post-only",
    # Bulk actions (SPEC §9): started by POST (roles in BULK_ACTIONS below);
    # a progress line is its creator's only, 404 for everyone else.
    "orgs:bulk": "post-only",
    "orgs:bulk-progress": "own-only",
    # People and notifications (SPEC §10): Administrators only.
    "users:list": ADMIN_ONLY,
    "users:invite": ADMIN_ONLY,
    "users:detail": ADMIN_ONLY,
    "users:deactivate": "post-only",
    "users:reactivate": "post-only",
    "users:revoke-invitation": "post-only",
    # The invitee's one-time link needs no sign-in; an unknown token is 404.
    "invite": "no-provider",
    "notifications:list": ADMIN_ONLY,
    "notifications:company": ADMIN_ONLY,
    "notifications:log": ADMIN_ONLY,
    "notifications:test": "post-only",
    "notifications:rotate-secret": "post-only",
    "connections:signin-settings": ADMIN_ONLY,
    "connections:signin-settings-off": "post-only",
    "connections:signin-settings-unlink": "post-only",
}


# Entry URLs that redirect to the wizard's current step.
WIZARD_ENTRIES = {"orgs:add", "orgs:edit-connection"}


def _named_patterns(
    resolver: URLResolver, namespace: str = ""
) -> list[tuple[str, object]]:
    found = []
    for pattern in resolver.url_patterns:
        if isinstance(pattern, URLResolver):
            ns = pattern.namespace or ""
            prefix = f"{namespace}{ns}:" if ns else namespace
            found += _named_patterns(pattern, prefix)
        elif isinstance(pattern, URLPattern) and pattern.name:
            found.append((f"{namespace}{pattern.name}", pattern))
    return found


def _console_url_names() -> list[str]:
    return [n for n, _ in _named_patterns(get_resolver()) if not n.startswith("admin:")]


def test_every_url_has_an_access_rule():
    missing = sorted(set(_console_url_names()) - set(GET_RULES))
    assert not missing, f"URLs without an access rule: {missing}"


def _nobodys_bulk_action():
    from connections.models import BulkAction

    return BulkAction.objects.create(kind="check_now", total=1, created_by=None)


def _campaign_row(world):
    from connections.models import Campaign, CampaignOrg

    campaign = Campaign.objects.create(name="Rotation", deadline="2099-01-01T00:00Z")
    campaign.companies.add(world.acme)
    return CampaignOrg.objects.create(
        campaign=campaign, org=world.acme_org, company=world.acme
    )


def _campaign_kwargs(world) -> dict[str, dict[str, object]]:
    row = _campaign_row(world)
    both = {"pk": row.campaign_id, "row_pk": row.pk}
    return {
        "campaigns:detail": {"pk": row.campaign_id},
        "campaigns:live": {"pk": row.campaign_id},
        "campaigns:row-reauthorize": both,
        "campaigns:row-send-link": both,
        "campaigns:row-copy-link": both,
        "campaigns:row-skip": both,
        "campaigns:settings": {"pk": row.campaign_id},
        "delegated:landing": {"token": "not-a-token"},
        "delegated:result": {"row_id": row.pk},
        "delegated:retry": {"row_id": row.pk},
    }


def _url_for(name: str, world) -> str:
    from django.urls import reverse

    from connections.models import ConnectionChange, PermissionCheck

    change = ConnectionChange.objects.create(
        kind="edit",
        org=world.acme_org,
        client_app=world.acme_org.client_app,
        login_url=world.acme_org.login_url,
    )
    check = PermissionCheck.objects.create(org=world.acme_org)
    from orgs.models import UrlVerification

    verification = UrlVerification.objects.create(
        org=world.acme_org, new_url="https://new.my.salesforce.com"
    )
    kwargs = {
        "orgs:detail": {"pk": world.acme_org.pk},
        "orgs:live": {"pk": world.acme_org.pk},
        "orgs:row": {"pk": world.acme_org.pk},
        "orgs:edit-connection": {"pk": world.acme_org.pk},
        "orgs:edit-connection-step": {"pk": world.acme_org.pk, "step": "app"},
        "orgs:add-step": {"step": "app"},
        "orgs:settings": {"pk": world.acme_org.pk},
        "orgs:reauthorize": {"pk": world.acme_org.pk},
        "orgs:edit-url": {"pk": world.acme_org.pk},
        "orgs:check": {"pk": world.acme_org.pk},
        "orgs:url-status": {
            "pk": world.acme_org.pk,
            "verification_id": verification.pk,
        },
        "orgs:verify-permissions": {"pk": world.acme_org.pk},
        "policies:edit": {"pk": world.acme_org.backup_policy.pk},
        "connections:authorize": {"change_id": change.pk},
        "connections:change-status": {"change_id": change.pk},
        "connections:check-status": {"check_id": check.pk},
        **_campaign_kwargs(world),
        "connections:signin-wait": {"attempt_id": 1},
        "companies:detail": {"pk": world.acme.pk},
        "companies:move-orgs": {"pk": world.acme.pk},
        "companies:delete": {"pk": world.acme.pk},
        "orgs:bulk-progress": {"pk": _nobodys_bulk_action().pk},
        "users:detail": {"pk": world.users["viewer"].pk},
        "users:deactivate": {"pk": world.users["viewer"].pk},
        "users:reactivate": {"pk": world.users["viewer"].pk},
        "users:revoke-invitation": {"pk": 1},
        "invite": {"token": "not-a-token"},
        "notifications:company": {"pk": world.acme.pk},
        "notifications:log": {"pk": world.acme.pk},
        "notifications:test": {"pk": world.acme.pk},
        "notifications:rotate-secret": {"pk": world.acme.pk},
        "connections:signin-settings-unlink": {"pk": 1},
    }.get(name, {})
    return reverse(name, kwargs=kwargs)


@pytest.mark.parametrize("role", [*sorted(ALL), "nobody"])
@pytest.mark.parametrize("name", sorted(GET_RULES))
def test_role_can_get_exactly_what_spec_allows(world, role, name):
    rule = GET_RULES[name]
    url = _url_for(name, world)
    response = world.client_for(role).get(url)
    # Security headers on every response, whatever the status.
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    if rule == "link":
        assert response.status_code == 410
    elif rule == "public":
        # Signed-in users are sent on from the sign-in page.
        assert response.status_code == (302 if name == "login" else 200)
    elif rule == "post-only":
        assert response.status_code == 405
    elif rule == "callback":
        # Without a state this browser started, the callback refuses.
        assert response.status_code == 403
    elif rule == "no-provider":
        assert response.status_code == 404
    elif rule == "own-only":
        # Not this user's: 404; a user without any role is refused first.
        assert response.status_code == (403 if role == "nobody" else 404)
    elif role in rule and name in WIZARD_ENTRIES:
        # The wizard's entry URL sends the browser on to its current step.
        assert response.status_code == 302, url
        assert response["Location"].endswith("/app/")
    elif role in rule:
        assert response.status_code == 200, url
    else:
        assert response.status_code == 403, url


@pytest.mark.parametrize("name", sorted(GET_RULES))
def test_anonymous_users_are_sent_to_sign_in(world, client, name):
    rule = GET_RULES[name]
    response = client.get(_url_for(name, world))
    if rule == "link":
        assert response.status_code == 410
    elif rule == "public":
        assert response.status_code == 200
    elif rule == "post-only":
        assert response.status_code in (302, 405)
    elif rule == "callback":
        assert response.status_code == 403  # no state from this browser
    elif rule == "no-provider":
        assert response.status_code == 404
    else:
        assert response.status_code == 302
        assert response["Location"].startswith("/login/")


@pytest.mark.parametrize("role", ["operator", "support", "viewer"])
def test_mutations_are_refused_with_403_and_change_nothing(world, role):
    from companies.models import AuditEvent, Company

    client = world.client_for(role)
    before = (Company.objects.count(), AuditEvent.objects.count())
    responses = [
        client.post("/companies/", {"name": "Evil Corp"}),
        client.post(f"/companies/{world.acme.pk}/", {"name": "Renamed"}),
        client.post(
            f"/companies/{world.acme.pk}/move-orgs/",
            {"to_company": world.globex.pk, "orgs": [world.acme_org.pk]},
        ),
        client.post(f"/companies/{world.acme.pk}/delete/"),
    ]
    assert [r.status_code for r in responses] == [403] * 4
    assert (Company.objects.count(), AuditEvent.objects.count()) == before
    world.acme.refresh_from_db()
    world.acme_org.refresh_from_db()
    assert world.acme.name == "Acme"
    assert world.acme_org.company_id == world.acme.pk


ADMIN_PAGES = [
    "/admin/",
    "/admin/orgs/salesforceorg/",
    "/admin/connections/externalclientapp/",
    "/admin/companies/company/",
    "/admin/companies/rolegrant/",
    "/admin/companies/auditevent/",
    "/admin/orgs/backuppolicy/",
    "/admin/auth/user/",
    "/admin/auth/group/",
    "/admin/connections/salesforceidentitylink/",
    "/admin/connections/signinattempt/",
    "/admin/orgs/refreshtokenrecord/",
]


@pytest.mark.parametrize("url", ADMIN_PAGES)
@pytest.mark.parametrize("role", sorted(ALL))
def test_django_admin_is_for_administrators_only(world, role, url):
    response = world.client_for(role).get(url)
    assert response.status_code == (200 if role == "administrator" else 403)


def test_every_registered_admin_model_is_in_the_matrix():
    from django.contrib import admin

    registered = {
        f"/admin/{m._meta.app_label}/{m._meta.model_name}/"
        for m in admin.site._registry
    }
    assert registered <= set(ADMIN_PAGES), registered - set(ADMIN_PAGES)


def test_other_companies_orgs_answer_404(world):
    for role in ["operator", "support", "viewer"]:
        client = world.client_for(role)
        assert client.get(f"/orgs/{world.globex_org.pk}/").status_code == 404
        assert client.get(f"/orgs/{world.acme_org.pk}/").status_code == 200


def test_lists_show_only_the_users_companies(world):
    body = world.client_for("viewer").get("/orgs/").content.decode()
    assert "acme-prod" in body and "globex-prod" not in body
    body = world.client_for("viewer").get("/policies/").content.decode()
    assert "acme-prod" in body and "globex-prod" not in body
    body = world.client_for("administrator").get("/orgs/").content.decode()
    assert "acme-prod" in body and "globex-prod" in body


ORG_ACTIONS = {
    # url name: roles allowed to POST
    "orgs:reauthorize": {"administrator", "operator"},
    "orgs:edit-url": {"administrator", "support"},
    "orgs:check": {"administrator", "operator", "support"},
    "orgs:verify-permissions": {"administrator", "operator"},
    "orgs:settings": {"administrator"},
}


@pytest.mark.parametrize("role", sorted(ALL))
@pytest.mark.parametrize("name", sorted(ORG_ACTIONS))
def test_org_actions_refuse_roles_that_may_not_take_them(world, role, name):
    from django.urls import reverse

    from companies.models import AuditEvent
    from connections.models import ConnectionChange, PermissionCheck
    from orgs.models import UrlVerification

    url = reverse(name, kwargs={"pk": world.acme_org.pk})
    before = (
        AuditEvent.objects.count(),
        ConnectionChange.objects.count(),
        PermissionCheck.objects.count(),
        UrlVerification.objects.count(),
    )
    response = world.client_for(role).post(url, {})
    if role in ORG_ACTIONS[name]:
        assert response.status_code in (302, 422)
    else:
        assert response.status_code == 403
        after = (
            AuditEvent.objects.count(),
            ConnectionChange.objects.count(),
            PermissionCheck.objects.count(),
            UrlVerification.objects.count(),
        )
        assert after == before
    # Another company's org does not exist for anyone but Administrators.
    other = reverse(name, kwargs={"pk": world.globex_org.pk})
    expected = 404 if role != "administrator" else None
    if expected:
        assert world.client_for(role).post(other, {}).status_code in (403, 404)


# Campaign rows (SPEC §9): url name -> roles allowed to POST.
CAMPAIGN_ROW_ACTIONS = {
    "campaigns:row-reauthorize": {"administrator", "operator"},
    "campaigns:row-send-link": {"administrator", "operator"},
    "campaigns:row-copy-link": {"administrator", "operator"},
    "campaigns:row-skip": {"administrator", "operator"},
}


@pytest.mark.parametrize("role", [*sorted(ALL), "nobody"])
@pytest.mark.parametrize("name", sorted(CAMPAIGN_ROW_ACTIONS))
def test_campaign_row_actions_refuse_roles_that_may_not_take_them(world, role, name):
    from django.urls import reverse

    from companies.models import AuditEvent
    from connections.models import CampaignOrg, ConnectionChange

    row = _campaign_row(world)
    url = reverse(name, kwargs={"pk": row.campaign_id, "row_pk": row.pk})

    def state():
        fields = ("state", "link_nonce", "email", "last_event")
        return (
            AuditEvent.objects.count(),
            ConnectionChange.objects.count(),
            CampaignOrg.objects.filter(pk=row.pk).values_list(*fields).get(),
        )

    before = state()
    response = world.client_for(role).post(url, {f"row{row.pk}-email": "a@b.example"})
    if role in CAMPAIGN_ROW_ACTIONS[name]:
        assert response.status_code in (200, 302)
        assert state() != before
    else:
        assert response.status_code == 403
        assert state() == before


@pytest.mark.parametrize("role", [*sorted(ALL), "nobody"])
def test_a_campaign_s_name_and_deadline_change_only_for_who_may_reauthorize(
    world, role
):
    from datetime import timedelta

    from django.urls import reverse
    from django.utils import timezone

    from companies.models import AuditEvent
    from connections.models import Campaign

    row = _campaign_row(world)  # Acme's only
    url = reverse("campaigns:settings", kwargs={"pk": row.campaign_id})
    deadline = timezone.localtime(timezone.now() + timedelta(days=10))
    response = world.client_for(role).post(
        url, {"name": "Renamed", "deadline": deadline.strftime("%Y-%m-%dT%H:%M")}
    )
    changed = Campaign.objects.filter(pk=row.campaign_id, name="Renamed").exists()
    if role in {"administrator", "operator"}:
        assert response.status_code == 302
        assert changed
    else:
        assert response.status_code == 403
        assert not changed
        assert not AuditEvent.objects.filter(action="campaign.update").exists()


PEOPLE_POSTS = [
    ("/users/invite/", {"email": "new@example.com", "administrator": "on"}),
    ("/users/{viewer}/", {"administrator": "on"}),
    ("/users/{viewer}/deactivate/", {}),
    ("/users/{viewer}/reactivate/", {}),
    ("/settings/notifications/{acme}/", {"webhook_url": "https://hooks.example.com/x"}),
    ("/settings/notifications/{acme}/test/", {}),
    ("/settings/notifications/{acme}/rotate-secret/", {}),
    ("/settings/sign-in/", {"org": "{org}"}),
    ("/settings/sign-in/off/", {}),
]


@pytest.mark.parametrize("role", ["operator", "support", "viewer", "nobody"])
def test_people_and_settings_changes_are_refused_to_others(world, role):
    from django.contrib.auth import get_user_model

    from companies.models import AuditEvent, Invitation, NotificationDelivery

    ids = {
        "viewer": world.users["viewer"].pk,
        "acme": world.acme.pk,
        "org": world.acme_org.pk,
    }
    client = world.client_for(role)
    before = (
        AuditEvent.objects.count(),
        Invitation.objects.count(),
        NotificationDelivery.objects.count(),
        get_user_model().objects.filter(is_active=True).count(),
    )
    for url, data in PEOPLE_POSTS:
        data = {k: v.format(**ids) for k, v in data.items()}
        response = client.post(url.format(**ids), data)
        assert response.status_code == 403, url
    after = (
        AuditEvent.objects.count(),
        Invitation.objects.count(),
        NotificationDelivery.objects.count(),
        get_user_model().objects.filter(is_active=True).count(),
    )
    assert after == before


# Bulk actions (SPEC §9): url /orgs/bulk/, action -> roles allowed to POST it.
BULK_ACTIONS = {
    "check_now": {"administrator", "operator", "support"},
    "verify_permissions": {"administrator", "operator"},
    "campaign": {"administrator", "operator"},
}


@pytest.mark.parametrize("role", [*sorted(ALL), "nobody"])
@pytest.mark.parametrize("action", sorted(BULK_ACTIONS))
def test_bulk_actions_refuse_roles_that_may_not_take_them(world, role, action):
    from companies.models import AuditEvent
    from connections.models import BulkAction, Campaign

    def state():
        return (
            AuditEvent.objects.count(),
            BulkAction.objects.count(),
            Campaign.objects.count(),
        )

    before = state()
    data = {"action": action, "orgs": [world.acme_org.pk], "source": "list"}
    response = world.client_for(role).post("/orgs/bulk/", data)
    if role in BULK_ACTIONS[action]:
        assert response.status_code == 302
        assert state() != before
    else:
        assert response.status_code == 403
        assert state() == before


def test_a_bulk_progress_line_is_its_creators_only(world):
    from connections.models import BulkAction

    action = BulkAction.objects.create(
        kind="check_now", total=1, created_by=world.users["support"]
    )
    url = f"/orgs/bulk/{action.pk}/"
    assert world.client_for("support").get(url).status_code == 200
    for role in ["administrator", "operator", "viewer"]:
        assert world.client_for(role).get(url).status_code == 404
