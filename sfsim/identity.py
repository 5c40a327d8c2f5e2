"""Identity endpoints: userinfo, the Identity URL, OIDC discovery and JWKS.

Bad, expired or revoked tokens get ``403 Bad_OAuth_Token`` as bare text
(reference §4).  On a My Domain host the token must belong to that org.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Response, request

from . import ids, jwt
from .models import KNOWN_SCOPES, AccessToken, Org, User
from .rest import LATEST_VERSION
from .tokens import identity_url
from .web import Ctx, bad_oauth_token, bearer_token, json_response

CLAIMS = [
    "active",
    "address",
    "email",
    "email_verified",
    "family_name",
    "given_name",
    "is_app_installed",
    "language",
    "locale",
    "name",
    "nickname",
    "organization_id",
    "phone_number",
    "phone_number_verified",
    "photos",
    "picture",
    "preferred_username",
    "profile",
    "sub",
    "updated_at",
    "urls",
    "user_id",
    "user_type",
    "zoneinfo",
]


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000+0000", time.gmtime(ts))


def _urls(org: Org, user: User, version: str | None) -> dict[str, str]:
    base = org.url
    org15 = ids.to15(org.org_id)
    rest = f"{base}/services/data/v{{version}}/"
    urls = {
        "enterprise": f"{base}/services/Soap/c/{{version}}/{org15}",
        "metadata": f"{base}/services/Soap/m/{{version}}/{org15}",
        "partner": f"{base}/services/Soap/u/{{version}}/{org15}",
        "rest": rest,
        "sobjects": f"{rest}sobjects/",
        "search": f"{rest}search/",
        "query": f"{rest}query/",
        "recent": f"{rest}recent/",
        "tooling_soap": f"{base}/services/Soap/T/{{version}}/{org15}",
        "tooling_rest": f"{rest}tooling/",
        "profile": f"{base}/{user.user_id}",
        "feeds": f"{rest}chatter/feeds",
        "groups": f"{rest}chatter/groups",
        "users": f"{rest}chatter/users",
        "feed_items": f"{rest}chatter/feed-items",
        "feed_elements": f"{rest}chatter/feed-elements",
        "custom_domain": base,
    }
    if version:
        value = LATEST_VERSION if version == "latest" else version
        urls = {k: u.replace("{version}", value) for k, u in urls.items()}
    return urls


def _photos(org: Org) -> dict[str, str]:
    return {
        "picture": f"{org.url}/profilephoto/005/F",
        "thumbnail": f"{org.url}/profilephoto/005/T",
    }


def _token_for(ctx: Ctx, value: str | None) -> AccessToken | None:
    if not value:
        return None
    at = ctx.state.live_access_token(value)
    if at is None:
        return None
    if ctx.org is not None and not ids.same_id(at.org_id, ctx.org.org_id):
        return None
    return at


def userinfo(ctx: Ctx) -> Response:
    """OIDC UserInfo; ``sub`` is the Identity URL."""
    with ctx.state.lock:
        at = _token_for(ctx, bearer_token())
        if at is None:
            return bad_oauth_token()
        user = ctx.state.users[at.user_id]
        org = ctx.state.orgs[user.org_id]
        body: dict[str, Any] = {
            "sub": identity_url(ctx.state, user),
            "user_id": user.user_id,
            "organization_id": org.org_id,
            "preferred_username": user.username,
            "nickname": user.username.split("@", 1)[0],
            "name": user.name,
            "email": user.email,
            "email_verified": True,
            "given_name": user.first_name,
            "family_name": user.last_name,
            "zoneinfo": "America/Los_Angeles",
            "photos": _photos(org),
            "profile": f"{org.url}/{user.user_id}",
            "picture": _photos(org)["picture"],
            "address": {"country": "US"},
            "is_salesforce_integration_user": user.license == "Salesforce Integration",
            "urls": _urls(org, user, None),
            "active": user.active,
            "user_type": "STANDARD",
            "language": "en_US",
            "locale": "en_US",
            "utcOffset": -28800000,
            "updated_at": _iso(user.modified_at),
            "is_app_installed": True,
        }
        return json_response(body)


def identity(ctx: Ctx, org_id: str, user_id: str) -> Response:
    """``GET /id/<org>/<user>`` with a Bearer header or ``?oauth_token=``."""
    with ctx.state.lock:
        at = _token_for(ctx, bearer_token() or request.values.get("oauth_token"))
        # The token must be the caller's own: same org and same user.
        if at is None or not (
            ids.same_id(at.org_id, org_id) and ids.same_id(at.user_id, user_id)
        ):
            return bad_oauth_token()
        user = ctx.state.users[at.user_id]
        org = ctx.state.orgs[user.org_id]
        body: dict[str, Any] = {
            "id": identity_url(ctx.state, user),
            "asserted_user": True,
            "user_id": user.user_id,
            "organization_id": org.org_id,
            "username": user.username,
            "nick_name": user.username.split("@", 1)[0],
            "display_name": user.name,
            "email": user.email,
            "email_verified": True,
            "first_name": user.first_name,
            "last_name": user.last_name,
            "timezone": "America/Los_Angeles",
            "photos": _photos(org),
            "addr_street": None,
            "addr_city": None,
            "addr_state": None,
            "addr_country": "US",
            "addr_zip": None,
            "mobile_phone": None,
            "mobile_phone_verified": False,
            "is_lightning_login_user": False,
            "status": {"created_date": None, "body": None},
            "urls": _urls(org, user, request.args.get("version")),
            "active": user.active,
            "user_type": "STANDARD",
            "language": "en_US",
            "locale": "en_US",
            "utcOffset": -28800000,
            "last_modified_date": _iso(user.modified_at),
            "is_app_installed": True,
        }
        return json_response(body)


def discovery(ctx: Ctx) -> Response:
    """``/.well-known/openid-configuration`` for this host (issuer = host)."""
    base = ctx.base_url
    doc = {
        "issuer": base,
        "authorization_endpoint": f"{base}/services/oauth2/authorize",
        "token_endpoint": f"{base}/services/oauth2/token",
        "revocation_endpoint": f"{base}/services/oauth2/revoke",
        "userinfo_endpoint": f"{base}/services/oauth2/userinfo",
        "introspection_endpoint": f"{base}/services/oauth2/introspect",
        "jwks_uri": f"{base}/id/keys",
        "registration_endpoint": f"{base}/services/oauth2/register",
        "scopes_supported": list(KNOWN_SCOPES),
        "response_types_supported": ["code", "token", "token id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "display_values_supported": ["page", "popup", "touch"],
        "token_endpoint_auth_methods_supported": [
            "client_secret_post",
            "client_secret_basic",
            "private_key_jwt",
        ],
        "claims_supported": CLAIMS,
        # Deliberately no code_challenge_methods_supported (reference §1).
    }
    return json_response(doc)


def keys(ctx: Ctx) -> Response:
    """The JWKS that verifies every id_token the simulator signs."""
    return json_response(jwt.jwks())
