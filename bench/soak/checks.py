"""What the soak proves afterwards, from the database and the simulator.

Runs in the harness's own process after ``django.setup()``; every check
returns a :class:`Check` with what it found, so the report can say which
org or change broke which rule.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.db.models import Count, Q
from django.utils import timezone

from companies.models import AuditEvent
from connections.models import CampaignOrg, ConnectionChange
from orgs.health import orgs_check_now
from orgs.models import (
    ConnectionStatus,
    RefreshTokenRecord,
    SalesforceOrg,
    UrlVerification,
)
from tests.simclient import Sim

# A change whose next step is this late was lost: beat's safety net resends
# every few seconds in the soak (VBSF_RESUME_CHANGES_SECONDS).
OVERDUE_SECONDS = 90


def moving_changes() -> Any:
    """Changes that should finish on their own soon: exchanges, and probes
    not told anything wrong. A probe that Salesforce answers with a problem
    (the org moved meanwhile, the app is unknown) keeps probing until the
    activation window ends and the change expires: waiting, not moving."""
    return ConnectionChange.objects.filter(
        Q(state=ConnectionChange.State.EXCHANGING)
        | Q(state=ConnectionChange.State.AWAITING_ACTIVATION, failure_code="")
    )


def lost_changes() -> list[str]:
    """Changes in an automatic state whose next step is long overdue."""
    late = timezone.now() - timedelta(seconds=OVERDUE_SECONDS)
    lost = ConnectionChange.objects.filter(
        Q(state=ConnectionChange.State.AWAITING_ACTIVATION, next_probe_at__lt=late)
        | Q(state=ConnectionChange.State.EXCHANGING, updated_at__lt=late)
    )
    return [f"change {c.pk} stuck in {c.state}" for c in lost]


@dataclass
class Check:
    name: str
    passed: bool
    detail: str = ""
    problems: list[str] = field(default_factory=list)
    # Worth knowing, not a failure of the rule.
    notes: list[str] = field(default_factory=list)


def journal(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


# A URL check takes a second or two; one running longer lost its message to
# a fault and waits for beat's safety net, which resends after 6 minutes
# (orgs.url_change.url_verifications_resume, every 2 minutes): by 9 minutes
# it must be done.
URL_CHECK_STALLED_SECONDS = 60
URL_CHECK_LOST_SECONDS = 9 * 60


def owed_revokes() -> Any:
    """Tokens the console replaced or abandoned and still has to revoke
    (the token ledger retries them; beat resends lost ones)."""
    return RefreshTokenRecord.objects.filter(
        revoke_requested_at__isnull=False, revoked_at__isnull=True
    )


def settled() -> tuple[int, int, int]:
    """Work still moving by itself: (changes, URL checks not yet stalled,
    revokes owed)."""
    moving = moving_changes().count()
    checking = UrlVerification.objects.filter(
        state=UrlVerification.State.RUNNING,
        created_at__gte=timezone.now() - timedelta(seconds=URL_CHECK_STALLED_SECONDS),
    ).count()
    return moving, checking, owed_revokes().count()


def url_checks_waiting() -> int:
    """URL checks waiting for beat's resend (not lost yet)."""
    return UrlVerification.objects.filter(state=UrlVerification.State.RUNNING).count()


def drain(timeout: float, say: Any) -> float:
    """Wait until changes and URL checks stop moving; seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if not any(settled()):
            break
        time.sleep(2)
    waited = time.monotonic() - started
    say(f"soak: drained in {waited:.0f}s (still moving: {settled()})")
    return waited


def recheck_all(timeout: float) -> int:
    """A health check of every org, as beat runs it; wait for all."""
    since = timezone.now()
    ids = list(SalesforceOrg.objects.values_list("pk", flat=True))
    orgs_check_now(org_ids=ids)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = SalesforceOrg.objects.exclude(last_checked_at__gte=since).count()
        if not left:
            return 0
        time.sleep(1)
    return SalesforceOrg.objects.exclude(last_checked_at__gte=since).count()


def changes_once(entries: list[dict[str, Any]]) -> Check:
    """No staged change lost or applied twice."""
    problems = []
    problems += lost_changes()
    lost = UrlVerification.objects.filter(
        state=UrlVerification.State.RUNNING,
        created_at__lt=timezone.now() - timedelta(seconds=URL_CHECK_LOST_SECONDS),
    )
    problems += [f"URL check {v.pk} of org {v.org_id} lost" for v in lost]
    finished = [e for e in entries if e.get("ok") and e["journey"] == "edit_connection"]
    for entry in finished:
        key = entry["result"].split()[-1]
        change = ConnectionChange.objects.filter(
            client_app__consumer_key=key,
            org_id=entry["org"],
            kind=ConnectionChange.Kind.EDIT,
        ).first()
        if change is None or change.state != ConnectionChange.State.APPLIED:
            state = change.state if change else "missing"
            problems.append(f"Finish seen for org {entry['org']}, change {state}")
    delegated = [e for e in entries if e.get("ok") and e["journey"] == "campaign"]
    for entry in delegated:
        rows = CampaignOrg.objects.filter(org_id=entry["org"])
        if not rows.filter(state=CampaignOrg.State.CONNECTED).exists():
            problems.append(
                f"delegated link used for org {entry['org']}, row not connected"
            )
    per_org = Counter(
        ConnectionChange.objects.filter(
            state=ConnectionChange.State.APPLIED
        ).values_list("org_id", "kind")
    )
    versions = dict(SalesforceOrg.objects.values_list("pk", "version"))
    for (org_id, _kind), _count in per_org.items():
        if org_id not in versions:
            problems.append(f"applied change of a missing org {org_id}")
    # An applied change's app is the org's app unless a later one replaced it.
    for org in SalesforceOrg.objects.select_related("client_app"):
        last = (
            ConnectionChange.objects.filter(
                org=org,
                state=ConnectionChange.State.APPLIED,
                kind=ConnectionChange.Kind.EDIT,
            )
            .order_by("-finished_at", "-pk")
            .first()
        )
        reauthorized_later = (
            last is not None
            and ConnectionChange.objects.filter(
                org=org,
                state=ConnectionChange.State.APPLIED,
                kind=ConnectionChange.Kind.REAUTHORIZE,
                pk__gt=last.pk,
            ).exists()
        )
        if last and not reauthorized_later and org.client_app_id != last.client_app_id:
            problems.append(f"org {org.pk} does not use its last applied app")
    applied = sum(per_org.values())
    return Check(
        "no staged change lost or applied twice",
        not problems,
        f"{applied} applied; journeys saw {len(finished)} Finish, "
        f"{len(delegated)} delegated links used",
        problems,
    )


def audit_once() -> Check:
    """Every applied change and URL change has exactly one audit event."""
    problems = []
    expected: Counter[tuple[int, str]] = Counter()
    for org_id, kind in ConnectionChange.objects.filter(
        state=ConnectionChange.State.APPLIED
    ).values_list("org_id", "kind"):
        action = {
            ConnectionChange.Kind.EDIT: "org.edit_connection",
            ConnectionChange.Kind.REAUTHORIZE: "org.reauthorize",
        }.get(kind)
        if action:
            expected[(org_id, action)] += 1
    for org_id in UrlVerification.objects.filter(
        state=UrlVerification.State.SUCCEEDED
    ).values_list("org_id", flat=True):
        expected[(org_id, "org.url_change")] += 1
    actions = ("org.edit_connection", "org.reauthorize", "org.url_change")
    found = Counter(
        {
            (row["org_id"], row["action"]): row["n"]
            for row in AuditEvent.objects.filter(action__in=actions)
            .values("org_id", "action")
            .annotate(n=Count("pk"))
        }
    )
    for key in set(expected) | set(found):
        if expected[key] != found[key]:
            problems.append(
                f"org {key[0]} {key[1]}: {found[key]} events for {expected[key]}"
            )
    # Each staged Edit Connection was started once; a delegated link was
    # used at most once.
    starts = Counter(
        event.after.get("change")
        for event in AuditEvent.objects.filter(action="connection_change.start")
    )
    edits = ConnectionChange.objects.filter(kind=ConnectionChange.Kind.EDIT)
    for pk in edits.values_list("pk", flat=True):
        if starts[pk] != 1:
            problems.append(f"change {pk}: {starts[pk]} start events")
    used = Counter(
        event.after.get("row")
        for event in AuditEvent.objects.filter(action="campaign.link_used")
    )
    problems += [
        f"campaign row {r}: {n} link_used events" for r, n in used.items() if n > 1
    ]
    return Check(
        "every audit event present once",
        not problems,
        f"{sum(found.values())} events for {sum(expected.values())} changes; "
        f"{edits.count()} changes started, {sum(used.values())} links used",
        problems,
    )


def _sim_orgs(sim: Sim) -> dict[str, dict[str, Any]]:
    return {o["org_id"]: o for o in sim.get("/orgs")["orgs"]}


def tokens_held(sim: Sim) -> Check:
    """No org left with a live token the console does not hold: per org, the
    simulator's live refresh tokens are the org's own plus those of open
    changes, and the org's own is live."""
    problems: list[str] = []
    notes: list[str] = []
    apps_by_org: dict[str, list[str]] = {}
    for app in sim.get("/apps")["apps"]:
        apps_by_org.setdefault(app["org_id"], []).append(app["consumer_key"])
    for org in SalesforceOrg.objects.all():
        held = 1 if org.has_refresh_token else 0
        held += (
            ConnectionChange.objects.filter(
                org=org, state__in=ConnectionChange.OPEN_STATES
            )
            .exclude(new_refresh_token_encrypted="")
            .count()
        )
        # A token owed a revoke is held by the ledger until Salesforce takes it.
        held += owed_revokes().filter(org=org).count()
        live = sum(
            sim.get("/refresh-tokens", consumer_key=key)["active"]
            for key in apps_by_org.get(org.org_id[:15], [])
            + apps_by_org.get(org.org_id, [])
        )
        if live > held:
            problems.append(f"org {org.pk}: {live} live tokens, console holds {held}")
        elif live < held:
            # The console still owes a revoke of a token Salesforce no longer
            # honours: nothing is exposed, the ledger is behind.
            notes.append(f"org {org.pk}: console holds {held}, {live} live")
        revoked = org.has_refresh_token and not sim.token_active(
            org.get_refresh_token()
        )
        if revoked and org.status == ConnectionStatus.CONNECTED:
            problems.append(f"org {org.pk}: connected on a revoked token")
    return Check(
        "no org left with a token nobody holds",
        not problems,
        f"{SalesforceOrg.objects.count()} orgs compared with the simulator, "
        f"{owed_revokes().count()} revokes still owed",
        problems,
        notes,
    )


def statuses_true(sim: Sim) -> Check:
    """Every org's status is what the simulator says it should be."""
    problems = []
    truth = _sim_orgs(sim)
    for org in SalesforceOrg.objects.all():
        sim_org = truth.get(org.org_id) or truth.get(org.org_id[:15])
        if sim_org is None:
            problems.append(f"org {org.pk}: not in the simulator")
            continue
        moved = (
            urlsplit(sim_org["login_url"]).hostname != urlsplit(org.login_url).hostname
        )
        live = org.has_refresh_token and sim.token_active(org.get_refresh_token())
        if moved:
            expected = {ConnectionStatus.URL_CHANGED}
        elif not live:
            expected = {ConnectionStatus.NEEDS_REAUTHORIZATION}
        else:
            expected = {ConnectionStatus.CONNECTED}
        if org.status not in expected:
            problems.append(
                f"org {org.pk}: {org.status}, simulator says {'/'.join(expected)}"
            )
    return Check(
        "every org's status matches the simulator",
        not problems,
        f"{len(truth)} simulator orgs",
        problems,
    )
