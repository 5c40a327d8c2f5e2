"""REST API on an org's My Domain host: versions, resources, query, limits.

Authentication order for every call but the version list: valid session for
*this* org (401 ``INVALID_SESSION_ID``), ``api``/``full`` scope (401, "not
valid for use with the REST API"), the user's "API Enabled" permission (403
``API_DISABLED_FOR_ORG``), then the daily limit (403
``REQUEST_LIMIT_EXCEEDED``).  Each authorised call counts one API request.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Response, request

from . import ids, soql
from .models import REST_SCOPES, AccessToken, Org, PermissionSet, User, is_sandbox_type
from .web import Ctx, bearer_token, json_response, rest_error

FIRST_VERSION = 31
LATEST = 66
LATEST_VERSION = f"{LATEST}.0"
VERSIONS = [f"{n}.0" for n in range(FIRST_VERSION, LATEST + 1)]
NOT_FOUND = "The requested resource does not exist"
UPA_ID = "000000000000000AAA"


def release_label(version: int) -> str:
    """Release name of an API version: v31.0 is Summer '14, three a year."""
    k = version - FIRST_VERSION
    season = ("Summer", "Winter", "Spring")[k % 3]
    year = 14 + (k + 2) // 3 if season != "Summer" else 14 + k // 3
    return f"{season} '{year:02d}"


def versions(ctx: Ctx) -> Response:
    """``GET /services/data/``: no auth, not counted against limits."""
    return json_response(
        [
            {
                "label": release_label(int(float(v))),
                "url": f"/services/data/v{v}",
                "version": v,
            }
            for v in VERSIONS
        ]
    )


def _authorise(ctx: Ctx) -> AccessToken | Response:
    state = ctx.state
    at = state.live_access_token(bearer_token() or "")
    if at is None or ctx.org is None or not ids.same_id(at.org_id, ctx.org.org_id):
        return rest_error("INVALID_SESSION_ID", "Session expired or invalid", 401)
    if not set(at.scopes) & REST_SCOPES:
        return rest_error(
            "INVALID_SESSION_ID",
            "This session is not valid for use with the REST API",
            401,
        )
    user = state.users[at.user_id]
    if "PermissionsApiEnabled" not in user.effective_permissions():
        return rest_error(
            "API_DISABLED_FOR_ORG",
            "API is not enabled for this Organization or Partner",
            403,
        )
    if ctx.org.api_usage >= ctx.org.api_limit:
        return rest_error(
            "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.", 403
        )
    ctx.org.api_usage += 1
    return at


def _check(ctx: Ctx, version: str) -> tuple[AccessToken, User, Org] | Response:
    at = _authorise(ctx)
    if isinstance(at, Response):
        return at
    if version not in VERSIONS:
        return rest_error("NOT_FOUND", NOT_FOUND, 404)
    assert ctx.org is not None
    return at, ctx.state.users[at.user_id], ctx.org


def resources(ctx: Ctx, version: str) -> Response:
    with ctx.state.lock:
        checked = _check(ctx, version)
        if isinstance(checked, Response):
            return checked
        _, user, org = checked
        base = f"/services/data/v{version}"
        names = [
            "sobjects",
            "query",
            "queryAll",
            "limits",
            "search",
            "recent",
            "tooling",
        ]
        body: dict[str, str] = {n: f"{base}/{n}" for n in names}
        body["identity"] = f"https://{org.identity_host}/id/{org.org_id}/{user.user_id}"
        return json_response(body)


def limits(ctx: Ctx, version: str) -> Response:
    with ctx.state.lock:
        checked = _check(ctx, version)
        if isinstance(checked, Response):
            return checked
        org = checked[2]
        body = {
            "DailyApiRequests": {
                "Max": org.api_limit,
                "Remaining": max(0, org.api_limit - org.api_usage),
            },
            "DailyBulkApiRequests": {"Max": 5000, "Remaining": 5000},
            "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000},
            "DailyAsyncApexExecutions": {"Max": 250000, "Remaining": 250000},
            "ConcurrentAsyncGetReportInstances": {"Max": 200, "Remaining": 200},
            "DataStorageMB": {"Max": 5, "Remaining": 5},
            "FileStorageMB": {"Max": 20, "Remaining": 20},
        }
        return json_response(body)


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000+0000", time.gmtime(ts))


def _attrs(sobject: str, record_id: str, version: str) -> dict[str, str]:
    return {
        "type": sobject,
        "url": f"/services/data/v{version}/sobjects/{sobject}/{record_id}",
    }


def _perm_fields(org: Org, granted: set[str]) -> dict[str, bool]:
    return {name: name in granted for name in org.permission_fields()}


def _permission_set(
    org: Org, ps: PermissionSet, user: User, version: str
) -> dict[str, Any]:
    owned = ps is user.profile_ps
    return {
        "attributes": _attrs("PermissionSet", ps.ps_id, version),
        "Id": ps.ps_id,
        "Name": ps.name,
        "Label": ps.label,
        "IsOwnedByProfile": owned,
        "ProfileId": user.profile_id if owned else None,
        **_perm_fields(org, ps.permissions),
    }


def _profile(org: Org, user: User, version: str) -> dict[str, Any]:
    suffix = "SFDC" if user.license == "Salesforce" else "INTG"
    license_id = ids.to18(f"{ids.PREFIX_USER_LICENSE}00000000{suffix}")
    return {
        "attributes": _attrs("Profile", user.profile_id, version),
        "Id": user.profile_id,
        "Name": user.profile_name,
        "UserLicenseId": license_id,
        "UserLicense": {
            "attributes": _attrs("UserLicense", license_id, version),
            "Id": license_id,
            "Name": user.license,
        },
        **_perm_fields(org, user.profile_ps.permissions),
    }


def _user_record(org: Org, user: User, version: str) -> dict[str, Any]:
    return {
        "attributes": _attrs("User", user.user_id, version),
        "Id": user.user_id,
        "Username": user.username,
        "Name": user.name,
        "FirstName": user.first_name,
        "LastName": user.last_name,
        "Email": user.email,
        "IsActive": user.active,
        "UserType": "Standard",
        "ProfileId": user.profile_id,
        "Profile": _profile(org, user, version),
        "UserRoleId": None,
        "LanguageLocaleKey": "en_US",
        "TimeZoneSidKey": "America/Los_Angeles",
        "CreatedDate": _iso(user.created_at),
        "LastModifiedDate": _iso(user.modified_at),
    }


def _org_record(org: Org, version: str) -> dict[str, Any]:
    trial = _iso(org.created_at + 30 * 86400) if org.org_type == "scratch" else None
    return {
        "attributes": _attrs("Organization", org.org_id, version),
        "Id": org.org_id,
        "Name": org.name,
        "OrganizationType": org.edition,
        "IsSandbox": is_sandbox_type(org.org_type),
        "InstanceName": org.instance_name,
        "TrialExpirationDate": trial,
        "NamespacePrefix": None,
        "LanguageLocaleKey": "en_US",
        "TimeZoneSidKey": "America/Los_Angeles",
        "CreatedDate": _iso(org.created_at),
    }


def _sources(ctx: Ctx, user: User, version: str) -> soql.SourceFn:
    state = ctx.state
    org = ctx.org
    assert org is not None

    def members() -> list[User]:
        # Only queries of users read the org's members: the health check's
        # Organization query must not scan every user of a fleet.
        return [u for u in state.users.values() if u.org_id == org.org_id]

    def psa_rows() -> list[dict[str, Any]]:
        rows = []
        for u in members():
            for ps in [u.profile_ps, *u.permission_sets]:
                rows.append(
                    {
                        "attributes": _attrs(
                            "PermissionSetAssignment", ps.assignment_id, version
                        ),
                        "Id": ps.assignment_id,
                        "AssigneeId": u.user_id,
                        "PermissionSetId": ps.ps_id,
                        "PermissionSetGroupId": None,
                        "IsActive": True,
                        "PermissionSet": _permission_set(org, ps, u, version),
                        "Assignee": {
                            "attributes": _attrs("User", u.user_id, version),
                            "Id": u.user_id,
                            "Username": u.username,
                            "Name": u.name,
                        },
                    }
                )
        return rows

    def upa_rows() -> list[dict[str, Any]]:
        # One row: the *current* user's effective permissions.
        return [
            {
                "attributes": _attrs("UserPermissionAccess", UPA_ID, version),
                "Id": UPA_ID,
                "LastCacheUpdate": _iso(state.now()),
                **_perm_fields(org, user.effective_permissions()),
            }
        ]

    def lookup(name: str) -> tuple[str, dict[str, Any], list[dict[str, Any]]] | None:
        # The current user is always a member, so every list has a first row
        # that can serve as the field schema.
        if name == "userpermissionaccess":
            rows = upa_rows()
            return "UserPermissionAccess", rows[0], rows
        if name == "permissionsetassignment":
            rows = psa_rows()
            return "PermissionSetAssignment", rows[0], rows
        if name == "permissionset":
            rows = [r["PermissionSet"] for r in psa_rows()]
            return "PermissionSet", rows[0], rows
        if name == "user":
            rows = [_user_record(org, u, version) for u in members()]
            return "User", rows[0], rows
        if name == "profile":
            rows = [_profile(org, u, version) for u in members()]
            return "Profile", rows[0], rows
        if name == "organization":
            rows = [_org_record(org, version)]
            return "Organization", rows[0], rows
        return None

    return lookup


def query(ctx: Ctx, version: str) -> Response:
    with ctx.state.lock:
        checked = _check(ctx, version)
        if isinstance(checked, Response):
            return checked
        _, user, _ = checked
        text = request.args.get("q", "")
        try:
            _, rows = soql.execute(text, _sources(ctx, user, version))
        except soql.SoqlError as exc:
            return rest_error(exc.error_code, exc.message, 400)
        return json_response({"totalSize": len(rows), "done": True, "records": rows})


def sobject(ctx: Ctx, version: str, sobject_name: str, record_id: str) -> Response:
    """``GET sobjects/Organization/<id>`` and ``sobjects/User/<id>``."""
    with ctx.state.lock:
        checked = _check(ctx, version)
        if isinstance(checked, Response):
            return checked
        org = checked[2]
        record: dict[str, Any] | None = None
        if sobject_name == "Organization" and ids.same_id(record_id, org.org_id):
            record = _org_record(org, version)
        elif sobject_name == "User":
            for u in ctx.state.users.values():
                if u.org_id == org.org_id and ids.same_id(u.user_id, record_id):
                    record = _user_record(org, u, version)
        if record is None:
            return rest_error("NOT_FOUND", NOT_FOUND, 404)
        # A record GET returns the object's own fields, not relationships.
        return json_response(
            {
                k: v
                for k, v in record.items()
                if not isinstance(v, dict) or k == "attributes"
            }
        )


def not_found(ctx: Ctx, **_: Any) -> Response:
    with ctx.state.lock:
        checked = _authorise(ctx)
        if isinstance(checked, Response):
            return checked
    return rest_error("NOT_FOUND", NOT_FOUND, 404)
