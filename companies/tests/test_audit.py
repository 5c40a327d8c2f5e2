"""The audit CSV: formula-leading cells neutralised, one line per event."""

from __future__ import annotations

import pytest
from django.db import transaction

from companies.audit import Actor, audit_csv_rows, audit_record, csv_safe
from companies.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("cell", ["=1+1", "+cmd", "-2", "@SUM(A1)", "\tx", "\rx"])
def test_cells_that_a_spreadsheet_would_evaluate_are_quoted(cell):
    assert csv_safe(cell) == "'" + cell


def test_plain_cells_are_left_alone():
    assert csv_safe("Acme") == "Acme"
    assert csv_safe(None) == ""


def test_the_export_has_a_header_and_one_line_per_event():
    with transaction.atomic():
        audit_record(
            actor=Actor.system(), action="company.create", summary="=HYPERLINK"
        )
    lines = list(audit_csv_rows(AuditEvent.objects.all()))
    assert lines[0].startswith("time,user,address")
    assert len(lines) == 2
    assert ",'=HYPERLINK," in lines[1]
