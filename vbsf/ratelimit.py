"""A fixed-window request counter per address in the shared cache, for
anonymous entry points (Log in with Salesforce starts, delegated links).

Own code because the only rate limiter in the dependencies is the sign-in
throttle (``companies.signin_throttle``), which counts failures per
username as well; these entry points count every request from an address.
"""

from __future__ import annotations

from django.core.cache import cache


def address_allowed(
    kind: str, *, address: str | None, limit: int, window_seconds: int
) -> bool:
    """Count one request of ``kind`` from ``address``; False once more than
    ``limit`` came within the current window."""
    key = f"vbsf:{kind}:{address or 'unknown'}"
    cache.add(key, 0, window_seconds)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, window_seconds)
        count = 1
    return count <= limit
