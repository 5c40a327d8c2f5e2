"""The password sign-in throttle (issue 11).

There is one password sign-in path: ``ThrottledAuthenticationForm`` on
/login/; the admin site sends its own login page there. Failures are
counted under three rules, each over the last ``LOGIN_LOCKOUT_SECONDS``:

- a username at one address: ``LOGIN_MAX_FAILURES`` (N), a person's typos;
- a username from anywhere: ``LOGIN_MAX_FAILURES_PER_USERNAME`` (M > N),
  guessing one account from many addresses;
- an address for any username: ``LOGIN_MAX_FAILURES_PER_ADDRESS`` (K > N),
  credential stuffing from one address.

An attempt refused while locked out is not tried and not counted, so a
username at one address adds at most N failures to the other two rules in
any window: one address cannot lock out an account used from elsewhere
(M > N), and one account's failures cannot lock out the other accounts at
that address (K > N). Settings refuse to start otherwise. Usernames are
compared case-insensitively (after Unicode NFKC, as Django's login form
normalizes them), so "Alice" and "ALICE" share their counters.

Each rule keeps, in Django's cache, the times of its last failures (at
most its limit): a sliding window, with no burst at a window's edge, and the
lockout ends exactly when the oldest counted failure is a window old. A
success clears only the username-at-address counter (the person's own
typos): clearing the address or username counters would let an attacker
who knows one password, or the real user signing in, reset the counters of
an attack in progress. Read and write are not one atomic step; concurrent
failures on one key can drop a count, bounded by the number of requests in
flight at once, like the check-then-try of every such throttle.

Why not django-axes (8.3.1, the version the package index serves): it
compares the largest of its counters (one per AXES_LOCKOUT_PARAMETERS
entry) with a single AXES_FAILURE_LIMIT (a callable receives the request
and credentials, never which counter), so it cannot lock the pair at N,
the username at M and the address at K; listing
``["username", "ip_address", ["username", "ip_address"]]`` under one
limit locks a username after N failures from anywhere, the very lockout of
everyone that issue 11 is about. Its cache handler also keys on the
concatenated values without separator or parameter name, so the username
"203.0.113.5" counts against the address 203.0.113.5.
"""

from __future__ import annotations

import hashlib
import math
import time
import unicodedata
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache


@dataclass(frozen=True)
class Rule:
    name: str  # as recorded in the lockout's audit event
    keys_on: tuple[str, ...]  # "username", "address"
    limit_setting: str

    @property
    def limit(self) -> int:
        return int(getattr(settings, self.limit_setting))


USERNAME_AT_ADDRESS = Rule(
    "username_at_address", ("username", "address"), "LOGIN_MAX_FAILURES"
)
USERNAME = Rule("username", ("username",), "LOGIN_MAX_FAILURES_PER_USERNAME")
ADDRESS = Rule("address", ("address",), "LOGIN_MAX_FAILURES_PER_ADDRESS")
RULES = (USERNAME_AT_ADDRESS, USERNAME, ADDRESS)


@dataclass(frozen=True)
class Lockout:
    rules: tuple[Rule, ...]
    seconds: int  # until the next attempt is tried

    @property
    def locked(self) -> list[str]:
        """What is locked: "username", "address", or both (for the audit)."""
        on = {part for rule in self.rules for part in rule.keys_on}
        return [part for part in ("username", "address") if part in on]

    @property
    def rule_names(self) -> list[str]:
        return [rule.name for rule in self.rules]

    @property
    def wait(self) -> str:
        minutes = max(1, math.ceil(self.seconds / 60))
        return "1 minute" if minutes == 1 else f"{minutes} minutes"


def now() -> float:
    """The throttle's clock (tests move it)."""
    return time.time()


def normalized_username(username: str) -> str:
    return unicodedata.normalize("NFKC", username).strip().casefold()


def cache_key(rule: Rule, username: str, address: str | None) -> str:
    # Hashed with the rule's name and a separator: a username can never
    # collide with an address, nor one rule's key with another's.
    values = {"username": normalized_username(username), "address": address or "-"}
    material = "\x00".join([rule.name, *(values[part] for part in rule.keys_on)])
    digest = hashlib.sha256(material.encode()).hexdigest()
    return f"signin-throttle:{rule.name}:{digest}"


def _window() -> int:
    return int(settings.LOGIN_LOCKOUT_SECONDS)


def _recent(stamps: object, at: float) -> list[float]:
    if not isinstance(stamps, list):
        return []
    return sorted(
        t for t in stamps if isinstance(t, (int, float)) and at - _window() < t
    )


def _keys(
    username: str, address: str | None, rules: tuple[Rule, ...] = RULES
) -> dict[Rule, str]:
    return {rule: cache_key(rule, username, address) for rule in rules}


def lockout(
    username: str, address: str | None, rules: tuple[Rule, ...] = RULES
) -> Lockout | None:
    """The lockout that refuses this attempt, or None to try the password.
    Other throttles (the invitation link's) pass their own ``rules``."""
    at = now()
    keys = _keys(username, address, rules)
    stored = cache.get_many(list(keys.values()))
    refusing, until = [], at
    for rule, key in keys.items():
        recent = _recent(stored.get(key), at)
        if rule.limit <= len(recent):
            refusing.append(rule)
            until = max(until, recent[-rule.limit] + _window())
    if not refusing:
        return None
    return Lockout(rules=tuple(refusing), seconds=math.ceil(until - at))


def record_failure(
    username: str, address: str | None, rules: tuple[Rule, ...] = RULES
) -> None:
    at = now()
    keys = _keys(username, address, rules)
    stored = cache.get_many(list(keys.values()))
    cache.set_many(
        {
            key: [*_recent(stored.get(key), at), at][-rule.limit :]
            for rule, key in keys.items()
        },
        timeout=_window(),
    )


def record_success(username: str, address: str | None) -> None:
    cache.delete(cache_key(USERNAME_AT_ADDRESS, username, address))
