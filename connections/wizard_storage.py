"""formtools storage for the connection wizard, kept in ``WizardState``.

formtools keeps a wizard's steps in the browser session, so a second tab
or reopening the wizard starts over, and two tabs each Finish. Here the
state belongs to the org's connection (or, for Add organization, to the
user): every tab sees the same step and choices.
"""

from __future__ import annotations

import copy
from typing import Any

from django.http import HttpRequest, HttpResponse
from formtools.wizard.storage.base import BaseStorage

from .models import WizardState

PREFIX = "connection_wizard_"


def wizard_state_for(*, org_id: int | None, user: Any) -> WizardState:
    if org_id is not None:
        state, _ = WizardState.objects.get_or_create(org_id=org_id)
    else:
        state, _ = WizardState.objects.get_or_create(org=None, user=user)
    return state


class WizardStateStorage(BaseStorage):
    """``data`` lives in a ``WizardState`` row, saved once per response."""

    def __init__(
        self, prefix: str, request: HttpRequest | None = None, file_storage: Any = None
    ) -> None:
        super().__init__(prefix, request, file_storage)
        key = self.prefix.removeprefix(f"wizard_{PREFIX}")
        user = request.user if request is not None else None
        self.state = wizard_state_for(
            org_id=int(key) if key.isdigit() else None, user=user
        )
        self.loaded = copy.deepcopy(self.state.data)
        if not self.state.data:
            self.init_data()

    def _get_data(self) -> dict[str, Any]:
        return self.state.data

    def _set_data(self, value: dict[str, Any]) -> None:
        self.state.data = value

    data = property(_get_data, _set_data)

    def update_response(self, response: HttpResponse) -> None:
        super().update_response(response)
        if self.state.data != self.loaded:
            self.state.save(update_fields=["data", "updated_at"])
            self.loaded = copy.deepcopy(self.state.data)
