"""Steps shared by the fault tests: orgs and apps in the simulator and the
console, the Edit Connection steps, and what the simulator saw."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from unittest import mock
from urllib.parse import parse_qs, urlsplit

from django.utils import timezone

from companies.audit import Actor
from companies.models import AuditEvent, Company
from connections import services
from connections.models import ConnectionChange, ExternalClientApp, PermissionCheck
from orgs.models import ConnectionStatus, SalesforceOrg
from tests.factories import (
    BackupPolicyFactory,
    CompanyFactory,
    ExternalClientAppFactory,
    SalesforceOrgFactory,
)
from tests.live import wait_for
from tests.simclient import Sim, salesforce_login

TOKEN_PATH = "/services/oauth2/token"
REVOKE_PATH = "/services/oauth2/revoke"
REST_PATH = "/services/data/v"


@dataclass
class ConnectedOrg:
    org: SalesforceOrg
    sim_org: dict[str, Any]
    user_id: str
    username: str
    old_token: str
    company: Company


def connected_org(stack: Any, name: str) -> ConnectedOrg:
    """An org connected through an old app, in the simulator and the console."""
    sim: Sim = stack.sim
    created = sim.create_org(name)
    username = f"admin@{name}.example"
    user_id = sim.create_user(created["org_id"], username)
    old_app = sim.create_app(
        created["org_id"], stack.url + "/oauth/callback/", name=f"{name}-old"
    )
    tokens = sim.mint_tokens(old_app["consumer_key"], user_id)
    company = CompanyFactory(name=f"{name.title()} Co")
    org = SalesforceOrgFactory(
        alias=name,
        org_id=created["org_id"],
        login_url=created["login_url"],
        instance_url=created["instance_url"],
        company=company,
        client_app=ExternalClientAppFactory(
            name=f"{name}-old",
            consumer_key=old_app["consumer_key"],
            consumer_secret=old_app["consumer_secret"],
        ),
        refresh_token=tokens["refresh_token"],
        connected_as_username=username,
        status=ConnectionStatus.CONNECTED,
    )
    BackupPolicyFactory(org=org)
    return ConnectedOrg(
        org, created, user_id, username, tokens["refresh_token"], company
    )


def new_app(stack: Any, target: ConnectedOrg, name: str, delay: int = 0) -> dict:
    return stack.sim.create_app(
        target.sim_org["org_id"],
        stack.url + "/oauth/callback/",
        name=name,
        activation_delay_seconds=delay,
    )


def start_change(target: ConnectedOrg, app: dict[str, str]) -> ConnectionChange:
    return services.connection_change_start(
        actor=Actor.system(),
        org=SalesforceOrg.objects.get(pk=target.org.pk),
        consumer_key=app["consumer_key"],
        consumer_secret=app["consumer_secret"],
        app_name=app["name"],
    )


def change(change_id: int) -> ConnectionChange:
    return ConnectionChange.objects.get(pk=change_id)


def wait_state(change_id: int, state: str, timeout: float = 30) -> ConnectionChange:
    return wait_for(
        lambda: (c := change(change_id)).state == state and c, timeout=timeout
    )


def login_for_code(stack: Any, change_id: int, username: str) -> str:
    """Begin authorization and log in at the simulator; the callback's code."""
    auth = services.connection_change_begin_authorization(change=change(change_id))
    callback = salesforce_login(auth.url, username, "sf-password")
    query = parse_qs(urlsplit(callback).query)
    assert query["state"] == [auth.state]
    return query["code"][0]


def authorize(stack: Any, change_id: int, username: str) -> ConnectionChange:
    """Log in, hand the code over, let the worker exchange it."""
    code = login_for_code(stack, change_id, username)
    services.connection_change_receive_code(change_id=change_id, code=code)
    return wait_state(change_id, "authorized")


def fault(sim: Sim, **spec: Any) -> str:
    return sim.fault(**spec)


def fault_fired(sim: Sim, fault_id: str) -> bool:
    """A fault with ``count`` disappears when its last hit starts: the
    request it matched has reached the simulator."""
    return fault_id not in {f["fault_id"] for f in sim.get("/faults")["faults"]}


def kill_mid_call(stack: Any, fault_id: str) -> None:
    """SIGKILL the worker while the request the fault slows is in flight."""
    wait_for(lambda: fault_fired(stack.sim, fault_id), timeout=30, interval=0.05)
    stack.workers.kill()


def org_host(target: ConnectedOrg) -> str:
    """The org's own Salesforce host (login and instance are one in the
    simulator): what it logged there was sent for this org alone."""
    return urlsplit(target.org.login_url).hostname or ""


def requests_to(
    sim: Sim, path: str, *, grant_type: str | None = None, host: str | None = None
) -> list[dict[str, Any]]:
    """What the simulator logged on ``path`` since the test's reset, at
    ``host`` if given. A request still in flight at the reset (its worker
    killed by the test before) is logged when it ends, in the next test's
    log: counting one org's requests leaves it out."""
    return [
        r
        for r in sim.requests()
        if path in r["path"]
        and (grant_type is None or r.get("grant_type") == grant_type)
        and (host is None or r["host"] == host)
    ]


def settle(
    sim: Sim,
    path: str,
    at_least: int,
    *,
    grant_type: str | None = None,
    host: str | None = None,
    quiet: float = 0.5,
    timeout: float = 15,
) -> int:
    """Wait until the simulator logged ``at_least`` requests on ``path`` (a
    slowed request is logged when it ends) and no more came for ``quiet``
    seconds; return how many there were."""

    def count() -> int:
        return len(requests_to(sim, path, grant_type=grant_type, host=host))

    wait_for(lambda: count() >= at_least, timeout=timeout)
    seen = count()
    while True:
        time.sleep(quiet)
        now = count()
        if now == seen:
            return now
        seen = now


def audit_count(action: str, **filters: Any) -> int:
    return AuditEvent.objects.filter(action=action, **filters).count()


def resume_later(seconds: float) -> int:
    """Run beat's safety net as it would run ``seconds`` from now."""
    later = timezone.now() + timedelta(seconds=seconds)
    with mock.patch("django.utils.timezone.now", return_value=later):
        return services.connection_changes_resume()


def verified(change_id: int) -> PermissionCheck:
    """The permission check the worker runs after the exchange, once done."""
    return wait_for(
        lambda: PermissionCheck.objects.filter(
            change_id=change_id, state=PermissionCheck.State.DONE
        ).first()
    )


def finish(change_id: int, *, checked: bool = True) -> SalesforceOrg:
    """Finish, as the web request does (the revoke is left to the worker),
    with the change's permission check unless ``checked`` is false."""
    current = change(change_id)
    org = SalesforceOrg.objects.select_related("company").get(pk=current.org_id)
    return services.connection_change_apply(
        actor=Actor.system(),
        change=current,
        company=org.company,
        permission_check=verified(change_id) if checked else None,
    )


def authorized_by_hand(
    stack: Any, target: ConnectedOrg, name: str, user_id: str, username: str
) -> ConnectionChange:
    """An authorized change written directly, with real tokens from the
    simulator, as the exchange task stores them. (The wizard keeps one open
    change per org, so a second one cannot be staged through it.)"""
    app = new_app(stack, target, name)
    tokens = stack.sim.mint_tokens(app["consumer_key"], user_id)
    client_app = ExternalClientApp(name=name, consumer_key=app["consumer_key"])
    client_app.set_consumer_secret(app["consumer_secret"])
    client_app.save()
    staged = ConnectionChange(
        kind=ConnectionChange.Kind.EDIT,
        org=target.org,
        company=target.company,
        started_version=SalesforceOrg.objects.get(pk=target.org.pk).version,
        client_app=client_app,
        login_url=target.org.login_url,
        org_type=target.org.org_type,
        state=ConnectionChange.State.AUTHORIZED,
        activation_started_at=timezone.now(),
        activated_at=timezone.now(),
        new_instance_url=tokens["instance_url"],
        new_org_id=target.org.org_id,
        new_user_id=user_id,
        new_username=username,
        granted_scopes=sorted(tokens["scope"].split()),
        authorized_at=timezone.now(),
    )
    staged.set_secret("new_refresh_token", tokens["refresh_token"])
    staged.save()
    return staged


def org_with_authorized_change(
    stack: Any, name: str
) -> tuple[ConnectedOrg, ConnectionChange]:
    """A connected org and an authorized change for it, ready to Finish."""
    target = connected_org(stack, name)
    username = f"new@{name}.example"
    user_id = stack.sim.create_user(target.sim_org["org_id"], username)
    staged = authorized_by_hand(stack, target, f"{name}-new", user_id, username)
    return target, staged
