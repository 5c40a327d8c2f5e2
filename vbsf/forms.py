"""Form fields shared by the apps."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError

# Primary keys are 64-bit; a longer number would overflow the database
# driver instead of simply matching nothing.
MAX_ID = 2**63 - 1


def _id_or_none(value: Any) -> int | None:
    text = str(value).strip()
    if not text.isdigit() or len(text) > 19 or int(text) > MAX_ID:
        return None
    return int(text)


class IdChoiceField(forms.ModelChoiceField):
    """A ModelChoiceField that refuses non-IDs before asking the database."""

    def to_python(self, value: Any) -> Any:
        if value in self.empty_values:
            return None
        if _id_or_none(value) is None:
            raise ValidationError(
                self.error_messages["invalid_choice"], code="invalid_choice"
            )
        return super().to_python(value)


class IdMultipleChoiceField(forms.ModelMultipleChoiceField):
    def _check_values(self, value: Any) -> Any:
        for item in value:
            if _id_or_none(item) is None:
                raise ValidationError(
                    self.error_messages["invalid_choice"],
                    code="invalid_choice",
                    params={"value": str(item)[:40]},
                )
        return super()._check_values(value)


def parse_id(value: str | None) -> int | None:
    """An ID from a query string, or None for anything else."""
    return _id_or_none(value) if value else None
