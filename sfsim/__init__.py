"""sfsim: a faithful Salesforce simulator for the connection console.

Run it with ``python -m sfsim --port 8765``; build the WSGI app in tests with
:func:`sfsim.app.create_app`.  See ``README.md`` for the control API.
"""

from __future__ import annotations

__all__ = ["create_app"]


def create_app(*args: object, **kwargs: object) -> object:
    """Lazy alias of :func:`sfsim.app.create_app` (keeps ``import sfsim`` cheap)."""
    from .app import create_app as _create_app

    return _create_app(*args, **kwargs)  # type: ignore[arg-type]
