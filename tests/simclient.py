"""A small client of the simulator's control API, for tests and benchmarks."""

from __future__ import annotations

from typing import Any

import requests


class Sim:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = requests.Session()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(
            method, f"{self.base_url}/_sim{path}", timeout=30, **kwargs
        )
        if response.status_code >= 400:
            raise AssertionError(f"sim {method} {path}: {response.text}")
        return response.json() if response.content else None

    def post(self, path: str, payload: dict[str, Any] | None = None) -> Any:
        return self._call("POST", path, json=payload or {})

    def get(self, path: str, **params: Any) -> Any:
        return self._call("GET", path, params=params)

    def delete(self, path: str) -> Any:
        return self._call("DELETE", path)

    def reset(self) -> None:
        self.post("/reset")

    def create_org(
        self, name: str, org_type: str = "production", **extra: Any
    ) -> dict[str, Any]:
        return self.post(
            "/orgs", {"name": name, "my_domain": name, "org_type": org_type, **extra}
        )

    def create_user(
        self,
        org_id: str,
        username: str,
        password: str = "sf-password",
        permissions: list[str] | None = None,
        license: str = "Salesforce",
    ) -> str:
        from connections.demo import ALL_PERMISSIONS

        return self.post(
            f"/orgs/{org_id}/users",
            {
                "username": username,
                "password": password,
                "permissions": ALL_PERMISSIONS if permissions is None else permissions,
                "license": license,
                "active": True,
            },
        )["user_id"]

    def create_app(
        self,
        org_id: str,
        callback_url: str,
        *,
        name: str = "test-eca",
        scopes: list[str] | None = None,
        activation_delay_seconds: int = 0,
        rotate_refresh_tokens: bool = False,
        **extra: Any,
    ) -> dict[str, str]:
        return self.post(
            f"/orgs/{org_id}/apps",
            {
                "name": name,
                "scopes": scopes
                or ["api", "refresh_token", "offline_access", "id", "openid"],
                "callback_urls": [callback_url],
                "activation_delay_seconds": activation_delay_seconds,
                "require_pkce": True,
                "rotate_refresh_tokens": rotate_refresh_tokens,
                **extra,
            },
        )

    def mint_tokens(self, consumer_key: str, user_id: str) -> dict[str, Any]:
        return self.post("/tokens", {"consumer_key": consumer_key, "user_id": user_id})

    def token_active(self, refresh_token: str) -> bool:
        return self.post("/check-token", {"refresh_token": refresh_token})["active"]

    def requests(self) -> list[dict[str, Any]]:
        data = self.get("/requests")
        return data["requests"] if isinstance(data, dict) else data

    def clear_requests(self) -> None:
        self.delete("/requests")

    def advance(self, seconds: float) -> None:
        self.post("/clock", {"advance_seconds": seconds})

    def fault(self, **spec: Any) -> str:
        return self.post("/faults", spec)["fault_id"]

    def clear_faults(self) -> None:
        self.delete("/faults")


def salesforce_login(
    authorize_url: str, username: str, password: str, decision: str = "Allow"
) -> str:
    """Do what a person does at the simulator's login page, without a
    browser; return the URL Salesforce redirects to (the console callback)."""
    import html
    import re
    from urllib.parse import urljoin

    session = requests.Session()

    def hidden_fields(page: str) -> dict[str, str]:
        return {
            html.unescape(name): html.unescape(value)
            for name, value in re.findall(
                r"<input type='hidden' name='([^']*)' value='([^']*)'>", page
            )
        }

    page = session.get(authorize_url, allow_redirects=False, timeout=30)
    assert page.status_code == 200, page.text[:500]
    action = urljoin(authorize_url.split("?")[0], "authorize")
    form = hidden_fields(page.text) | {"username": username, "pw": password}
    step = session.post(action, data=form, allow_redirects=False, timeout=30)
    if step.status_code == 200 and "approval_form" in step.text:
        form = hidden_fields(step.text) | {"decision": decision}
        step = session.post(action, data=form, allow_redirects=False, timeout=30)
    assert step.status_code in (302, 303), step.text[:500]
    return step.headers["Location"]
