from __future__ import annotations

# The same empty-cache start as the cross-app tests (Redis in CI keeps
# throttle counters between tests otherwise).
from tests.conftest import fresh_cache  # noqa: F401
