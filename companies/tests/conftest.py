from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def fresh_cache():
    """Each test starts with an empty cache: on Redis (CI) sign-in throttle
    counters would otherwise leak from one test to the next."""
    from django.conf import settings
    from django.core.cache import cache

    if "DatabaseCache" not in settings.CACHES["default"]["BACKEND"]:
        cache.clear()
