"""REST API calls: API versions, SOQL queries, limits, the Organization row
and the connected user's record and permissions."""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import urlencode

from .errors import InvalidQuery, MalformedResponse, OrgMismatch, SalesforceError
from .results import PermissionMap
from .transport import api_url, get_json, setting
from .urls import to_18

# The transport's logger: one name for everything the client logs.
logger = logging.getLogger("vbsf.salesforce")

MAX_QUERY_PAGES = 10
_NEXT_RECORDS_RE = re.compile(r"^/services/data/v\d+\.\d+/query/[A-Za-z0-9-]+$")
_FIELD_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def _data_url(instance_url: str) -> str:
    version = setting("SALESFORCE_API_VERSION", "66.0")
    return f"{api_url(instance_url, what='instance URL')}/services/data/v{version}"


def list_api_versions(*, instance_url: str) -> list[str]:
    """Return the REST API versions the instance serves, oldest first."""
    url = f"{api_url(instance_url, what='instance URL')}/services/data/"
    rows = get_json(url, kind=list)
    versions = [
        str(r["version"]) for r in rows if isinstance(r, dict) and "version" in r
    ]
    return sorted(versions, key=lambda v: [int(p) for p in v.split(".") if p.isdigit()])


def query(*, instance_url: str, access_token: str, soql: str) -> list[dict[str, Any]]:
    """Run a SOQL query; return every record, following up to 10 pages."""
    instance = api_url(instance_url, what="instance URL")
    url = f"{_data_url(instance)}/query?{urlencode({'q': soql})}"
    records: list[dict[str, Any]] = []
    for _ in range(MAX_QUERY_PAGES):
        page = get_json(url, access_token=access_token, kind=dict)
        if not isinstance(page.get("records"), list):
            raise MalformedResponse()
        records += [_strip(r) for r in page["records"] if isinstance(r, dict)]
        next_url = page.get("nextRecordsUrl")
        if page.get("done", True) or not next_url:
            return records
        if not _NEXT_RECORDS_RE.match(str(next_url)):
            raise MalformedResponse()
        url = f"{instance}{next_url}"
    # Dropping rows silently could make a permission check lie.
    raise MalformedResponse("The Salesforce query returned too many rows.")


def _strip(record: dict[str, Any]) -> dict[str, Any]:
    """Drop the ``attributes`` member at every level of a record."""
    return {
        key: _strip(value) if isinstance(value, dict) else value
        for key, value in record.items()
        if key != "attributes"
    }


def get_limits(*, instance_url: str, access_token: str) -> dict[str, Any]:
    """Return the org's limits document (``DailyApiRequests`` ...)."""
    url = f"{_data_url(instance_url)}/limits"
    return get_json(url, access_token=access_token, kind=dict)  # type: ignore[no-any-return]


def get_organization(
    *, instance_url: str, access_token: str, org_id: str
) -> dict[str, Any]:
    """Return the Organization row; OrgMismatch if it is another org's."""
    expected = to_18(org_id)
    soql = (
        "SELECT Id, Name, OrganizationType, IsSandbox, InstanceName, "
        "TrialExpirationDate, NamespacePrefix FROM Organization"
    )
    rows = query(instance_url=instance_url, access_token=access_token, soql=soql)
    try:
        (row,) = rows
        actual = to_18(str(row.get("Id")))
    except ValueError:  # not exactly one row, or a bad ID
        raise MalformedResponse() from None
    if actual != expected:
        raise OrgMismatch(expected_org_id=expected, actual_org_id=actual)
    return row


def org_type_of(organization: dict[str, Any]) -> str:
    """The org type of an Organization row, by sfdx-core's sandbox rule."""
    if organization.get("IsSandbox"):
        return "scratch" if organization.get("TrialExpirationDate") else "sandbox"
    if organization.get("OrganizationType") == "Developer Edition":
        return "developer"
    return "production"


def check_org(
    *, instance_url: str, access_token: str, expected_org_id: str
) -> dict[str, Any]:
    """Cheap health check: the Organization row plus ``org_type``; raises
    OrgMismatch when the instance answers for another org."""
    row = get_organization(
        instance_url=instance_url, access_token=access_token, org_id=expected_org_id
    )
    return {**row, "org_type": org_type_of(row)}


def fetch_user_permissions(
    *, instance_url: str, access_token: str, fields: list[str]
) -> PermissionMap:
    """Effective permissions of the connected user (UserPermissionAccess).

    Fields unknown to this org (INVALID_FIELD) count as not granted and are
    listed in the result's ``unknown_fields``.
    """
    if not fields or not all(_FIELD_RE.match(name) for name in fields):
        raise ValueError("Permission fields must be plain field names.")

    def read(names: list[str]) -> dict[str, Any]:
        soql = f"SELECT {', '.join(names)} FROM UserPermissionAccess"
        rows = query(instance_url=instance_url, access_token=access_token, soql=soql)
        return rows[0] if rows else {}

    result, unknown = PermissionMap(), set()
    try:
        row = read(fields)
        result.update({name: row.get(name) is True for name in fields})
    except InvalidQuery as exc:
        if exc.code != "INVALID_FIELD":
            raise
        for name in fields:
            try:
                result[name] = read([name]).get(name) is True
            except InvalidQuery as field_exc:
                if field_exc.code != "INVALID_FIELD":
                    raise
                result[name] = False
                unknown.add(name)
        logger.warning(
            "salesforce permission fields unknown in org: %s", sorted(unknown)
        )
    result.unknown_fields = frozenset(unknown)
    return result


def fetch_user(*, instance_url: str, access_token: str, user_id: str) -> dict[str, Any]:
    """Return ``user_id``, ``username``, ``is_active``, ``user_type``,
    ``profile_name`` and ``license_name`` (``None`` when not readable)."""
    where = f"FROM User WHERE Id = '{to_18(user_id)}'"
    fields = "Id, Username, IsActive, UserType, Profile.Name"
    try:
        soql = f"SELECT {fields}, Profile.UserLicense.Name {where}"
        rows = query(instance_url=instance_url, access_token=access_token, soql=soql)
    except InvalidQuery:
        # Not every org or API version exposes the license relationship.
        soql = f"SELECT {fields} {where}"
        rows = query(instance_url=instance_url, access_token=access_token, soql=soql)
    if not rows:
        raise SalesforceError("The Salesforce user was not found.", code="NOT_FOUND")
    row = rows[0]
    profile = row.get("Profile") if isinstance(row.get("Profile"), dict) else {}
    license_ = profile.get("UserLicense") or {}
    return {
        "user_id": to_18(str(row.get("Id"))),
        "username": row.get("Username"),
        "is_active": row.get("IsActive") is True,
        "user_type": row.get("UserType"),
        "profile_name": profile.get("Name"),
        "license_name": license_.get("Name") if isinstance(license_, dict) else None,
    }
