"""REST API on the My Domain host: versions, auth errors, limits, SOQL (§4, §7)."""

from __future__ import annotations

from .conftest import Sim, World

UPA = "SELECT PermissionsApiEnabled, PermissionsViewAllData, PermissionsQueryAllFiles FROM UserPermissionAccess"


def _minted(sim: Sim, world: World, scopes: list[str] | None = None) -> str:
    body = {"consumer_key": world.key, "user_id": world.user_id}
    if scopes:
        body["scopes"] = scopes
    return sim.ctl("POST", "/tokens", body)["access_token"]


def test_version_list_needs_no_auth_and_does_not_count(sim: Sim, world: World) -> None:
    resp = sim.client.get(f"/h/{world.host}/services/data/")
    versions = resp.get_json()
    assert resp.status_code == 200
    assert versions[0] == {
        "label": "Summer '14",
        "url": "/services/data/v31.0",
        "version": "31.0",
    }
    assert versions[-1] == {
        "label": "Spring '26",
        "url": "/services/data/v66.0",
        "version": "66.0",
    }
    assert {
        "label": "Winter '26",
        "url": "/services/data/v65.0",
        "version": "65.0",
    } in versions
    assert resp.headers["Sforce-Limit-Info"] == "api-usage=0/15000"


def test_limit_info_header_counts_calls(sim: Sim, world: World) -> None:
    token = _minted(sim, world)
    assert (
        sim.rest(world.host, token, "/").headers["Sforce-Limit-Info"]
        == "api-usage=1/15000"
    )
    resp = sim.rest(world.host, token, "/limits")
    assert resp.headers["Sforce-Limit-Info"] == "api-usage=2/15000"
    assert resp.get_json()["DailyApiRequests"] == {"Max": 15000, "Remaining": 14998}


def test_resources_map(sim: Sim, world: World) -> None:
    resources = sim.rest(world.host, _minted(sim, world), "/").get_json()
    assert resources["query"] == "/services/data/v66.0/query"
    assert resources["limits"] == "/services/data/v66.0/limits"
    assert resources["sobjects"] == "/services/data/v66.0/sobjects"


def test_invalid_session_is_401_envelope(sim: Sim, world: World) -> None:
    for token in (None, "00Dx0000000BV7z!bogus"):
        resp = sim.rest(world.host, token, "/limits")
        assert resp.status_code == 401
        assert resp.get_json() == [
            {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
        ]


def test_token_of_another_org_is_invalid_here(sim: Sim, world: World) -> None:
    other = sim.org("globex")
    sim.user(other["org_id"], "a@globex.example")
    token = _minted(sim, world)
    assert sim.rest("globex.my.salesforce.com", token, "/limits").status_code == 401


def test_rest_on_login_host_is_invalid_session(sim: Sim, world: World) -> None:
    resp = sim.rest("login.salesforce.com", _minted(sim, world), "/limits")
    assert resp.status_code == 401


def test_session_without_api_scope_is_not_valid_for_rest(
    sim: Sim, world: World
) -> None:
    resp = sim.rest(
        world.host, _minted(sim, world, ["openid", "refresh_token"]), "/limits"
    )
    assert resp.status_code == 401
    assert resp.get_json() == [
        {
            "message": "This session is not valid for use with the REST API",
            "errorCode": "INVALID_SESSION_ID",
        }
    ]
    assert (
        sim.rest(world.host, _minted(sim, world, ["api"]), "/limits").status_code == 200
    )


def test_user_without_api_enabled_gets_api_disabled(sim: Sim, world: World) -> None:
    sim.ctl(
        "POST",
        f"/orgs/{world.org_id}/users/{world.user_id}",
        {"permissions": ["PermissionsViewAllData"]},
    )
    resp = sim.rest(world.host, _minted(sim, world), "/limits")
    assert resp.status_code == 403
    assert resp.get_json()[0]["errorCode"] == "API_DISABLED_FOR_ORG"


def test_daily_limit_exhausted(sim: Sim, world: World) -> None:
    token = _minted(sim, world)
    sim.ctl("POST", f"/orgs/{world.org_id}", {"api_usage": 15000})
    resp = sim.rest(world.host, token, "/limits")
    assert resp.status_code == 403
    assert resp.get_json() == [
        {
            "message": "TotalRequests Limit exceeded.",
            "errorCode": "REQUEST_LIMIT_EXCEEDED",
        }
    ]


def test_unknown_version_and_resource_are_not_found(sim: Sim, world: World) -> None:
    token = _minted(sim, world)
    resp = sim.client.get(
        f"/h/{world.host}/services/data/v30.0/limits",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert resp.status_code == 404 and resp.get_json()[0]["errorCode"] == "NOT_FOUND"
    assert sim.rest(world.host, token, "/tooling/query").status_code == 404


def test_user_permission_access_is_one_row_of_effective_permissions(
    sim: Sim, world: World
) -> None:
    sim.ctl(
        "POST",
        f"/orgs/{world.org_id}/users/{world.user_id}",
        {
            "permissions": ["PermissionsApiEnabled"],
            "permission_sets": [
                {"name": "Backup", "permissions": ["PermissionsViewAllData"]}
            ],
        },
    )
    body = sim.soql(world.host, _minted(sim, world), UPA).get_json()
    assert body["totalSize"] == 1 and body["done"] is True
    row = body["records"][0]
    assert row["attributes"]["type"] == "UserPermissionAccess"
    assert (row["PermissionsApiEnabled"], row["PermissionsViewAllData"]) == (True, True)
    assert row["PermissionsQueryAllFiles"] is False


def test_unknown_permission_field_is_invalid_field(sim: Sim, world: World) -> None:
    token = _minted(sim, world)
    resp = sim.soql(
        world.host, token, "SELECT PermissionsNoSuchThing FROM UserPermissionAccess"
    )
    assert resp.status_code == 400
    error = resp.get_json()[0]
    assert error["errorCode"] == "INVALID_FIELD"
    assert "No such column 'PermissionsNoSuchThing'" in error["message"]
    # An org whose API version lacks a field answers the same way.
    sim.ctl(
        "POST",
        f"/orgs/{world.org_id}",
        {"unavailable_permission_fields": ["PermissionsQueryAllFiles"]},
    )
    assert (
        sim.soql(world.host, token, UPA).get_json()[0]["errorCode"] == "INVALID_FIELD"
    )


def test_permission_set_assignments_include_the_profile(sim: Sim, world: World) -> None:
    sim.ctl(
        "POST",
        f"/orgs/{world.org_id}/users/{world.user_id}",
        {"permission_sets": [{"name": "Backup_Access", "label": "Backup Access",
                              "permissions": ["PermissionsQueryAllFiles"]}]},
    )  # fmt: skip
    q = (
        "SELECT PermissionSetId, PermissionSet.Name, PermissionSet.Label, "
        "PermissionSet.IsOwnedByProfile, PermissionSet.PermissionsQueryAllFiles "
        f"FROM PermissionSetAssignment WHERE AssigneeId = '{world.user_id[:15]}'"
    )
    rows = sim.soql(world.host, _minted(sim, world), q).get_json()["records"]
    assert len(rows) == 2
    owned = [r for r in rows if r["PermissionSet"]["IsOwnedByProfile"]]
    named = [r for r in rows if not r["PermissionSet"]["IsOwnedByProfile"]]
    assert (
        len(owned) == 1
        and owned[0]["PermissionSet"]["PermissionsQueryAllFiles"] is False
    )
    assert named[0]["PermissionSet"]["Name"] == "Backup_Access"
    assert named[0]["PermissionSet"]["Label"] == "Backup Access"
    assert named[0]["PermissionSet"]["PermissionsQueryAllFiles"] is True
    assert named[0]["PermissionSet"]["attributes"]["type"] == "PermissionSet"


def test_user_row_with_profile_and_license(sim: Sim, world: World) -> None:
    integ = sim.user(world.org_id, "int@acme.example", license="Salesforce Integration")
    q = (
        "SELECT Id, Username, IsActive, UserType, ProfileId, Profile.Name, "
        f"Profile.UserLicense.Name FROM User WHERE Id = '{integ['user_id']}'"
    )
    rows = sim.soql(world.host, _minted(sim, world), q).get_json()["records"]
    assert len(rows) == 1
    row = rows[0]
    assert row["Username"] == "int@acme.example" and row["IsActive"] is True
    assert row["UserType"] == "Standard"
    assert row["Profile"]["Name"] == "Salesforce API Only System Integrations"
    assert row["Profile"]["UserLicense"]["Name"] == "Salesforce Integration"


def test_organization_query_and_sobject(sim: Sim) -> None:
    for org_type, extra, sandbox, trial in (
        ("production", {}, False, False),
        ("sandbox", {"sandbox_name": "uat"}, True, False),
        ("scratch", {}, True, True),
    ):
        org = sim.org(f"o{org_type}", org_type, **extra)
        user = sim.user(org["org_id"], f"a@{org_type}.example")
        app = sim.app(org["org_id"])
        token = sim.ctl(
            "POST",
            "/tokens",
            {"consumer_key": app["consumer_key"], "user_id": user["user_id"]},
        )["access_token"]
        host = org["instance_url"].removeprefix("https://")
        q = (
            "SELECT Id, Name, OrganizationType, IsSandbox, InstanceName, "
            "TrialExpirationDate, NamespacePrefix FROM Organization"
        )
        row = sim.soql(host, token, q).get_json()["records"][0]
        assert row["Id"] == org["org_id"]
        assert row["IsSandbox"] is sandbox
        assert (row["TrialExpirationDate"] is not None) is trial
        assert row["NamespacePrefix"] is None
        record = sim.rest(
            host, token, f"/sobjects/Organization/{org['org_id'][:15]}"
        ).get_json()
        assert record["Id"] == org["org_id"] and record["Name"] == row["Name"]
        assert (
            sim.rest(host, token, "/sobjects/Organization/00Dx0000000BV7z").status_code
            == 404
        )


def test_malformed_and_unknown_object_queries(sim: Sim, world: World) -> None:
    token = _minted(sim, world)
    resp = sim.soql(world.host, token, "SELECT Id FROM User ORDER BY Name")
    assert (
        resp.status_code == 400 and resp.get_json()[0]["errorCode"] == "MALFORMED_QUERY"
    )
    resp = sim.soql(world.host, token, "SELECT Id FROM Account")
    assert resp.status_code == 400 and resp.get_json()[0]["errorCode"] == "INVALID_TYPE"
    resp = sim.rest(world.host, token, "/query")
    assert (
        resp.status_code == 400 and resp.get_json()[0]["errorCode"] == "MALFORMED_QUERY"
    )
