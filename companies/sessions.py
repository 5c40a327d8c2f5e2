"""The session engine (``SESSION_ENGINE``): Django's database sessions,
stored with the id of the user signed in, so that deactivating a user ends
their sessions at once (``companies.people.user_deactivate``)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore

from .models import ConsoleSession


class SessionStore(DatabaseSessionStore):
    @classmethod
    def get_model_class(cls) -> type[ConsoleSession]:
        return ConsoleSession

    def create_model_instance(self, data: dict[str, Any]) -> ConsoleSession:
        session = super().create_model_instance(data)
        try:
            session.user_id = int(data[SESSION_KEY])
        except (KeyError, TypeError, ValueError):
            session.user_id = None  # anonymous (a sign-in in progress)
        return session
