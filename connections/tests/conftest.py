"""The shared personas and the empty cache for the connections tests."""

from tests.conftest import fresh_cache, world  # noqa: F401
