"""The dashboard's pictures: geometry, the failures-per-day selector and
the page that draws them."""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
from django.db import connection
from django.template.loader import render_to_string
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from companies.access import AccessProfile
from companies.models import AuditEvent
from orgs import pictures
from orgs.health import org_status_record
from orgs.models import ConnectionStatus
from orgs.selectors import failures_per_day, org_status_counts
from tests.factories import (
    CompanyFactory,
    RoleGrantFactory,
    SalesforceOrgFactory,
    UserFactory,
)

STATUSES = list(ConnectionStatus.choices)


def _counts(*numbers: int) -> list[tuple[str, str, int]]:
    return [
        (status, label, n) for (status, label), n in zip(STATUSES, numbers, strict=True)
    ]


# --- the bar of orgs by status ----------------------------------------------


@pytest.mark.parametrize(
    "numbers",
    [
        (1, 1, 1, 0, 0, 0),  # thirds: 33.3% each
        (18, 0, 3, 2, 0, 1),
        (1, 1, 1, 1, 1, 1),
        (997, 1, 1, 1, 0, 0),
        (0, 0, 0, 0, 0, 7),
    ],
)
def test_the_percentages_add_up_to_100_and_the_segments_tile_the_bar(numbers):
    bar = pictures.status_bar(_counts(*numbers), width=600)
    assert sum(item.percent for item in bar.items) == 100
    assert bar.total == sum(numbers)
    edge = 0.0
    for segment in bar.segments:
        assert segment.x == pytest.approx(edge)
        edge = segment.x + segment.width
    assert edge == pytest.approx(600)
    assert [s.count for s in bar.segments] == [n for n in numbers if n]


def test_each_segment_is_titled_with_its_status_count_and_share():
    bar = pictures.status_bar(_counts(3, 0, 1, 0, 0, 0))
    assert [s.title for s in bar.segments] == [
        "Connected: 3 orgs (75%)",
        "Needs re-authorization: 1 org (25%)",
    ]
    assert (
        bar.aria_label
        == "Orgs by status, 4 in all: 3 Connected, 1 Needs re-authorization"
    )


def test_a_tiny_share_does_not_read_as_none():
    bar = pictures.status_bar(_counts(999, 0, 0, 0, 0, 1))
    failed = bar.items[-1]
    assert failed.percent == 0 and failed.percent_text == "under 1%"
    assert failed.width > 0


def test_zero_orgs_draw_an_empty_bar_that_says_so():
    bar = pictures.status_bar(_counts(0, 0, 0, 0, 0, 0))
    assert bar.is_empty and bar.segments == ()
    assert bar.aria_label == "No orgs yet"
    assert [item.percent for item in bar.items] == [0] * 6
    svg = render_to_string("orgs/_picture_status_bar.html", {"bar": bar})
    assert 'role="img"' in svg and 'aria-label="No orgs yet"' in svg
    assert "No orgs yet</text>" in svg
    assert "bar-segment" not in svg


def test_the_bar_template_escapes_and_draws_every_segment():
    counts = [("connected", "<b>Connected</b>", 2), ("failed", "Failed", 1)]
    svg = render_to_string(
        "orgs/_picture_status_bar.html", {"bar": pictures.status_bar(counts)}
    )
    assert "<b>" not in svg and "&lt;b&gt;Connected&lt;/b&gt;" in svg
    assert svg.count("<title>") == 2
    assert '<g class="bar-segment failed">' in svg


# --- the 30-day line of failures ----------------------------------------------

END = date(2025, 11, 30)


def _days(values: dict[int, int], days: int = 30) -> list[tuple[date, int]]:
    start = END - timedelta(days=days - 1)
    return [(start + timedelta(days=i), values.get(i, 0)) for i in range(days)]


def test_the_line_summarises_the_total_and_the_worst_day():
    daily = _days({3: 2, 27: 5, 28: 4, 29: 1})  # index 27 is 28 Nov
    line = pictures.failure_line(daily)
    assert line.aria_label == "12 failures in the last 30 days, most on 28 Nov: 5"
    assert line.total == 12 and line.peak.day == date(2025, 11, 28)
    assert len(line.points) == 30


def test_ties_go_to_the_most_recent_day_and_one_failure_is_singular():
    assert pictures.failure_line(_days({2: 1})).aria_label == (
        "1 failure in the last 30 days, most on 3 Nov: 1"
    )
    line = pictures.failure_line(_days({1: 3, 20: 3}))
    assert line.peak.label == "21 Nov"


def test_no_failures_draw_a_flat_line_on_the_axis():
    line = pictures.failure_line(_days({}))
    assert line.aria_label == "No failures in the last 30 days"
    assert line.peak is None
    assert {p.y for p in line.points} == {line.bottom}
    assert [t.label for t in line.y_ticks] == ["0", "1"]


def test_the_line_spans_the_plot_and_the_peak_reaches_the_top():
    line = pictures.failure_line(_days({10: 8}), width=600, height=200)
    assert line.points[0].x == line.left and line.points[-1].x == line.right
    xs = [p.x for p in line.points]
    assert xs == sorted(xs)
    top = max(int(t.label) for t in line.y_ticks)
    assert top >= 8 and len(line.y_ticks) <= 6
    assert line.points[10].y == pytest.approx(
        line.bottom - (line.bottom - line.top) * 8 / top
    )
    assert line.polyline.count(",") == 30


def test_the_x_axis_is_labelled_weekly_ending_today():
    line = pictures.failure_line(_days({}))
    assert [t.label for t in line.x_ticks] == [
        "2 Nov",
        "9 Nov",
        "16 Nov",
        "23 Nov",
        "30 Nov",
    ]


def test_the_failure_template_has_a_hidden_table_of_every_day():
    line = pictures.failure_line(_days({27: 5}))
    html = render_to_string("orgs/_picture_failures.html", {"line": line})
    assert 'role="img"' in html
    assert 'aria-label="5 failures in the last 30 days, most on 28 Nov: 5"' in html
    table = html[html.index('<table class="visually-hidden">') :]
    assert table.count("<tr>") == 31  # the header and 30 days
    assert "<td>5</td>" in table
    assert ">Failures</text>" in html  # the y axis title
    # Coordinates are never localised (a decimal comma would break SVG).
    assert re.search(r'cx="\d+(\.\d+)?"', html)


# --- the selector and the page ------------------------------------------------


def _status_events(org, n: int, *, status: str = "failed", days_ago: int = 0):
    """n org.status events of ``org`` dated ``days_ago`` days back."""
    events = AuditEvent.objects.bulk_create(
        AuditEvent(
            action="org.status",
            org=org,
            company=org.company,
            actor_username="system",
            summary=f"{status}",
            before={"status": "connected"},
            after={"status": status},
        )
        for _ in range(n)
    )
    AuditEvent.objects.filter(pk__in=[e.pk for e in events]).update(
        created_at=timezone.now() - timedelta(days=days_ago)
    )


@pytest.fixture
def viewer(db):
    company = CompanyFactory(name="Acme")
    user = UserFactory(username="vera")
    RoleGrantFactory(user=user, role="viewer", company=company)
    client = Client()
    client.force_login(user)
    return company, AccessProfile(user), client


def test_failures_per_day_counts_orgs_entering_a_failing_status(viewer):
    company, access, _ = viewer
    org, foreign = SalesforceOrgFactory(company=company), SalesforceOrgFactory()
    _status_events(org, 2, status="failed")
    _status_events(org, 1, status="needs_reauthorization")
    _status_events(org, 4, status="connected")  # recoveries do not count
    _status_events(org, 3, status="failed", days_ago=2)
    _status_events(org, 9, status="failed", days_ago=30)  # outside the window
    _status_events(foreign, 5, status="failed")  # another company's
    daily = failures_per_day(access=access)
    assert len(daily) == 30 and daily[-1][0] == timezone.localdate()
    assert daily[-1][1] == 3 and daily[-3][1] == 3
    assert sum(n for _, n in daily) == 6


def test_failures_per_day_reads_what_health_checks_record(viewer):
    company, access, _ = viewer
    org = SalesforceOrgFactory(company=company)
    org_status_record(org.pk, ConnectionStatus.FAILED, "Salesforce did not answer.")
    org_status_record(org.pk, ConnectionStatus.CONNECTED, "")
    org_status_record(org.pk, ConnectionStatus.NEEDS_REAUTHORIZATION, "Revoked.")
    assert failures_per_day(access=access)[-1][1] == 2


def _populate(company, n: int) -> None:
    orgs = SalesforceOrgFactory.create_batch(
        n, company=company, status=ConnectionStatus.FAILED
    )
    for i, org in enumerate(orgs):
        _status_events(org, 1, days_ago=i % 30)


@pytest.mark.parametrize("n", [10, 200])
def test_each_picture_is_one_query_whatever_the_numbers(
    viewer, n, django_assert_num_queries
):
    company, access, _ = viewer
    _populate(company, n)
    access.company_ids()  # the user's grants, read once per request
    with django_assert_num_queries(1):
        assert sum(org_status_counts(access=access).values()) == n
    with django_assert_num_queries(1):
        assert sum(c for _, c in failures_per_day(access=access)) == n


def _dashboard_queries(client) -> tuple[int, str]:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get("/")
    assert response.status_code == 200
    return len(ctx.captured_queries), response.content.decode()


def test_the_dashboard_queries_stay_constant_from_10_to_200(viewer):
    company, _, client = viewer
    _populate(company, 10)
    small, _ = _dashboard_queries(client)
    _populate(company, 190)
    large, body = _dashboard_queries(client)
    assert small == large
    assert "Orgs by status, 200 in all: 200 Failed" in body
    assert "200 failures in the last 30 days" in body
    print(f"dashboard queries: {large}")


def test_the_dashboard_draws_both_pictures_with_their_numbers(viewer):
    company, _, client = viewer
    SalesforceOrgFactory.create_batch(3, company=company)
    failed = SalesforceOrgFactory(company=company, status=ConnectionStatus.FAILED)
    SalesforceOrgFactory(company=company, status=ConnectionStatus.URL_CHANGED)
    SalesforceOrgFactory(status=ConnectionStatus.FAILED)  # another company
    _status_events(failed, 2)
    _status_events(failed, 5, days_ago=3)
    body = client.get("/").content.decode()
    assert body.count('role="img"') == 2
    assert (
        'aria-label="Orgs by status, 5 in all: 3 Connected, 1 URL changed, 1 Failed"'
    ) in body
    peak = timezone.localdate() - timedelta(days=3)
    assert (
        f'aria-label="7 failures in the last 30 days, most on '
        f'{pictures.day_label(peak)}: 5"'
    ) in body
    assert "<title>Connected: 3 orgs (60%)</title>" in body
    # The legend shows the same numbers as text.
    assert re.search(r"URL changed: <strong>1</strong>", body)
    assert '<table class="visually-hidden">' in body


def test_the_dashboard_with_no_orgs_says_so(viewer):
    _, _, client = viewer
    body = client.get("/").content.decode()
    assert 'aria-label="No orgs yet"' in body and "No orgs yet</text>" in body
    assert 'aria-label="No failures in the last 30 days"' in body
