"""The tiny SOQL parser: accepted subset and real-looking errors."""

from __future__ import annotations

import pytest

from sfsim import soql


def test_parse_fields_where_and_limit() -> None:
    q = soql.parse(
        "select Id, PermissionSet.Name FROM PermissionSetAssignment "
        "where AssigneeId = '005x00000012Q9P' and PermissionSet.IsOwnedByProfile = TRUE "
        "LIMIT 5"
    )
    assert [f.text for f in q.fields] == ["Id", "PermissionSet.Name"]
    assert q.sobject.text == "PermissionSetAssignment"
    assert [(c.field.text, c.value) for c in q.where] == [
        ("AssigneeId", "005x00000012Q9P"),
        ("PermissionSet.IsOwnedByProfile", True),
    ]
    assert q.limit == 5


@pytest.mark.parametrize(
    "text",
    [
        "",
        "SELECT FROM User",
        "SELECT Id User",
        "SELECT Id FROM User WHERE Id",
        "SELECT Id FROM User WHERE Id = 5",
        "SELECT Id FROM User ORDER BY Id",
        "SELECT Id FROM User WHERE Id = 'x' OR Id = 'y'",
        "SELECT COUNT() FROM User",
        "DELETE FROM User",
    ],
)
def test_anything_else_is_malformed(text: str) -> None:
    with pytest.raises(soql.SoqlError) as info:
        soql.parse(text)
    assert info.value.error_code == "MALFORMED_QUERY"
    assert "ERROR at Row:1:Column:" in info.value.message


def test_unknown_field_and_object_messages() -> None:
    record = {"attributes": {"type": "X", "url": "/x"}, "Id": "1", "Name": "n"}

    def sources(name: str) -> tuple[str, dict, list[dict]] | None:
        return ("Thing", record, [record]) if name == "thing" else None

    with pytest.raises(soql.SoqlError) as info:
        soql.execute("SELECT Nope FROM Thing", sources)
    assert info.value.error_code == "INVALID_FIELD"
    assert "No such column 'Nope' on entity 'Thing'" in info.value.message
    assert "Row:1:Column:8" in info.value.message
    with pytest.raises(soql.SoqlError) as info:
        soql.execute("SELECT Id FROM Other", sources)
    assert info.value.error_code == "INVALID_TYPE"
    _, rows = soql.execute("select id, NAME from thing where name = 'N'", sources)
    assert rows == [{"attributes": record["attributes"], "Id": "1", "Name": "n"}]
