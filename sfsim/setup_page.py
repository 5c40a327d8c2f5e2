"""A small demo "Setup" page: orgs, users, and "New External Client App".

Demo-only: it shows user passwords so a presenter can log in, and shows a new
app's consumer key and secret once, with copy buttons.  No scripts or styles
come from other hosts.
"""

from __future__ import annotations

from html import escape
from typing import Any

from flask import Blueprint, Response, request

from .models import App
from .state import BadInput, NotFound, SimState
from .web import text_response

SCOPE_CHOICES = [
    ("full", "Full access (full)", True),
    (
        "refresh_token",
        "Perform requests at any time (refresh_token, offline_access)",
        True,
    ),
    ("openid", "Access unique user identifiers (openid)", True),
    ("api", "Manage user data via APIs (api)", False),
    (
        "id",
        "Access the identity URL service (id, profile, email, address, phone)",
        False,
    ),
    ("web", "Manage user data via Web browsers (web)", False),
]

_STYLE = """
body{font-family:system-ui,Arial,sans-serif;margin:0;background:#f4f6f9;color:#181818}
header{background:#032d60;color:#fff;padding:12px 24px;font-size:18px}
main{max-width:1000px;margin:24px auto;padding:0 16px}
section{background:#fff;border:1px solid #dddbda;border-radius:6px;padding:16px 20px;
margin-bottom:20px}
h2{font-size:16px;margin:0 0 12px}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid #eee;vertical-align:top}
th{background:#fafaf9;font-weight:600}
code{font-size:12px;word-break:break-all}
label{display:block;font-size:13px;margin:10px 0 4px;font-weight:600}
input[type=text],input[type=number],input[type=url],select{width:100%;max-width:520px;
padding:7px;border:1px solid #c9c9c9;border-radius:4px;box-sizing:border-box}
.check{font-weight:400;margin:4px 0}
button{background:#0176d3;color:#fff;border:0;border-radius:4px;padding:8px 14px;
cursor:pointer;font-size:13px;margin-top:12px}
button.copy{padding:3px 8px;margin:0 0 0 8px;font-size:12px}
.ok{border-color:#2e844a;background:#f3fbf5}
.err{border-color:#ba0517;background:#fef1ee;color:#ba0517}
.muted{color:#706e6b;font-size:12px}
"""
_SCRIPT = """
function copyText(id){const t=document.getElementById(id).textContent;
navigator.clipboard.writeText(t).then(()=>{const b=document.getElementById(id+'-btn');
b.textContent='Copied';setTimeout(()=>b.textContent='Copy',1500);});}
"""


def _created_panel(app: App) -> str:
    rows = ""
    for label, ident, value in (
        ("Consumer Key", "consumer-key", app.consumer_key),
        ("Consumer Secret", "consumer-secret", app.consumer_secret),
    ):
        rows += (
            f"<tr><th>{label}</th><td><code id='{ident}'>{escape(value)}</code>"
            f"<button type='button' class='copy' id='{ident}-btn' "
            f"onclick=\"copyText('{ident}')\">Copy</button></td></tr>"
        )
    delay = app.activation_delay_seconds
    note = f"Changes can take up to {delay} seconds to take effect." if delay else ""
    return (
        f"<section class='ok'><h2>External client app “{escape(app.name)}” created</h2>"
        f"<table>{rows}</table><p class='muted'>{note} The secret is shown only now.</p>"
        "</section>"
    )


def _render(state: SimState, notice: str = "") -> str:
    org_rows, options = "", ""
    for org in state.orgs.values():
        users = [u for u in state.users.values() if u.org_id == org.org_id]
        apps = [a for a in state.apps.values() if a.org_id == org.org_id]
        user_html = "<br>".join(
            f"{escape(u.username)} / <code>{escape(u.password)}</code>"
            + ("" if u.active else " (inactive)")
            for u in users
        )
        app_html = "<br>".join(
            f"{escape(a.name)}: <code>{escape(a.consumer_key[:24])}…</code>"
            + (" (pending)" if not state.app_is_active(a) else "")
            for a in apps
        )
        org_rows += (
            f"<tr><td>{escape(org.name)}<br><span class='muted'>{escape(org.org_type)}"
            f"</span></td><td><code>{org.org_id}</code></td><td><code>{escape(org.url)}"
            f"</code></td><td>{user_html or '-'}</td><td>{app_html or '-'}</td></tr>"
        )
        options += (
            f"<option value='{org.org_id}'>{escape(org.name)} ({org.org_id})</option>"
        )
    scopes = "".join(
        f"<label class='check'><input type='checkbox' name='scopes' value='{s}'"
        f"{' checked' if on else ''}> {escape(text)}</label>"
        for s, text, on in SCOPE_CHOICES
    )
    orgs_table = (
        "<table><tr><th>Org</th><th>Org ID</th><th>My Domain URL</th>"
        f"<th>Users (username / password)</th><th>Apps</th></tr>{org_rows}</table>"
        if org_rows
        else "<p class='muted'>No orgs yet (POST /_sim/orgs or start with --fixture).</p>"
    )
    form = (
        "<form method='post' action='/_sim/setup/apps'>"
        f"<label for='org'>Organization</label><select id='org' name='org_id'>{options}"
        "</select>"
        "<label for='name'>External Client App Name</label>"
        "<input type='text' id='name' name='name' required>"
        "<label for='callback'>Callback URL</label>"
        "<input type='url' id='callback' name='callback_url' required "
        "placeholder='https://console.example.com/oauth/callback/'>"
        f"<label>OAuth Scopes</label>{scopes}"
        "<label class='check'><input type='checkbox' name='require_pkce' value='1'> "
        "Require Proof Key for Code Exchange (PKCE)</label>"
        "<label class='check'><input type='checkbox' name='rotate_refresh_tokens' "
        "value='1'> Enable Refresh Token Rotation</label>"
        "<label for='delay'>Activation delay (seconds)</label>"
        "<input type='number' id='delay' name='activation_delay_seconds' value='60' min='0'>"
        "<button type='submit'>Create</button></form>"
    )
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>Setup | sfsim</title><style>{_STYLE}</style>"
        f"<script>{_SCRIPT}</script></head><body>"
        "<header>Setup · Salesforce simulator (demo only)</header><main>"
        f"{notice}<section><h2>Organizations</h2>{orgs_table}</section>"
        f"<section><h2>New External Client App</h2>{form}</section>"
        "</main></body></html>"
    )


def blueprint(state: SimState) -> Blueprint:
    bp = Blueprint("sfsim_setup", __name__, url_prefix="/_sim/setup")

    @bp.get("")
    def page() -> Response:
        with state.lock:
            return text_response(_render(state), 200)

    @bp.post("/apps")
    def create() -> Response:
        form = request.form
        scopes = form.getlist("scopes")
        if "refresh_token" in scopes:
            scopes.append("offline_access")
        data: dict[str, Any] = {
            "name": form.get("name", ""),
            "callback_urls": [u for u in form.get("callback_url", "").split() if u],
            "scopes": scopes,
            "require_pkce": form.get("require_pkce") == "1",
            "rotate_refresh_tokens": form.get("rotate_refresh_tokens") == "1",
        }
        try:
            data["activation_delay_seconds"] = int(
                form.get("activation_delay_seconds") or 0
            )
            with state.lock:
                app = state.create_app(form.get("org_id", ""), data)
                return text_response(_render(state, _created_panel(app)), 200)
        except (BadInput, NotFound, ValueError) as exc:
            notice = f"<section class='err'>Could not create the app: {escape(str(exc))}</section>"
            with state.lock:
                return text_response(_render(state, notice), 400)

    return bp
