"""URL converters: IDs are bounded so a huge number is a 404, not an error."""

from __future__ import annotations

from django.urls import register_converter


class IdConverter:
    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)


# Registered on import: every urls module that uses ``<id:...>`` imports
# this module first, whatever order Django loads them in.
register_converter(IdConverter, "id")
