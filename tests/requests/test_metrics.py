"""The workbench's metrics page (issue 5 §5, PM-IX-9): requests per month by right and jurisdiction, median days
to close, share closed on time, overdue now; numbers on a known data set, charts as inline SVG, a fixed number
of queries, and who may open it."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from requests import metrics
from requests.models import Right, Status
from tests.factories.inventory import JurisdictionFactory, staff_in_role, staff_with_permissions
from tests.factories.requests import RightsRequestFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
METRICS_URL = "admin:requests_rightsrequest_metrics"


def at(day: str, hour: int = 12) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)


@pytest.fixture
def known(db, settings):
    """Eight requests; the window is July 2025 to June 2026 (12 months, counted in Singapore time)."""
    settings.DEADLINE_TIME_ZONE = "Asia/Singapore"
    eu, uk, sg = (JurisdictionFactory(code=code) for code in ("EU", "UK", "SG"))

    def make(right, jurisdiction, received, due, status, closed=None, **kwargs):
        return RightsRequestFactory(
            right=right, jurisdiction=jurisdiction, received_at=received, due_at=due, status=status, closed_at=closed, **kwargs
        )

    # Answered on time in 10 days (closed April).
    make(Right.ACCESS, eu, at("2026-04-10"), at("2026-05-10"), Status.COMPLETED, at("2026-04-20"))
    # Received 17:00 UTC on 30 April = 01:00 on 1 May in Singapore: a May request. Rejected late, in 36 days (June).
    make(Right.ERASURE, uk, at("2026-04-30", 17), at("2026-05-31"), Status.REJECTED, at("2026-06-05", 17))
    # Partly completed in 20 days, on time (May).
    make(Right.ACCESS, eu, at("2026-05-05"), at("2026-06-05"), Status.PARTIALLY_COMPLETED, at("2026-05-25"))
    # Late against due_at but on time against its extension: 75 days (May).
    make(
        Right.ACCESS, eu, at("2026-03-01"), at("2026-04-01"), Status.COMPLETED, at("2026-05-15"), extended_due_at=at("2026-06-01")
    )
    # Withdrawn: received, never answered.
    make(Right.OBJECTION, eu, at("2026-05-06"), at("2026-06-06"), Status.WITHDRAWN, at("2026-05-07"))
    # Open: one overdue, one not.
    make(Right.RECTIFICATION, eu, at("2026-06-01"), at("2026-06-10"), Status.IN_PROGRESS)
    make(Right.ACCESS, sg, at("2026-06-02"), at("2026-07-02"), Status.IN_PROGRESS)
    # Before the window: not counted anywhere.
    make(Right.ACCESS, eu, at("2025-01-05"), at("2025-02-05"), Status.COMPLETED, at("2025-01-20"))


def _month(m: metrics.RequestMetrics, year: int, month: int) -> int:
    return [(d.year, d.month) for d in m.months].index((year, month))


def test_pm_ix_9_metrics_on_a_known_data_set(known):
    m = metrics.request_metrics(months=12, now=NOW)
    assert len(m.months) == 12 and (m.months[0].year, m.months[0].month) == (2025, 7)
    mar, apr, may, jun = (_month(m, 2026, month) for month in (3, 4, 5, 6))

    assert m.received == 7  # the 2025 request is outside the window
    assert set(m.by_right) == {Right.ACCESS, Right.ERASURE, Right.OBJECTION, Right.RECTIFICATION}
    assert m.by_right[Right.ACCESS][mar] == 1 and m.by_right[Right.ACCESS][apr] == 1
    assert m.by_right[Right.ACCESS][may] == 1 and m.by_right[Right.ACCESS][jun] == 1
    assert m.by_right[Right.ERASURE][may] == 1 and m.by_right[Right.ERASURE][apr] == 0  # counted in Singapore's May
    assert sum(m.by_right[Right.OBJECTION]) == 1 and sum(m.by_right[Right.RECTIFICATION]) == 1
    assert {code: sum(counts) for code, counts in m.by_jurisdiction.items()} == {"EU": 5, "SG": 1, "UK": 1}
    assert list(m.by_jurisdiction) == ["EU", "SG", "UK"]

    # Answered: completed, partly completed, rejected (the withdrawn one is not); on time against the extension.
    assert (m.answered, m.on_time) == (4, 3) and m.share_on_time == 0.75
    assert m.median_days == pytest.approx((20 + 36) / 2)  # 10, 20, 36, 75 days
    assert (m.answered_by_month[apr], m.answered_by_month[may], m.answered_by_month[jun]) == (1, 2, 1)
    assert (m.on_time_by_month[apr], m.on_time_by_month[may], m.on_time_by_month[jun]) == (1, 2, 0)
    assert m.share_on_time_by_month[jun] == 0 and m.share_on_time_by_month[mar] is None

    assert (m.overdue_now, m.open_now) == (1, 2)


def test_the_median_of_an_odd_count_is_the_middle_duration(known):
    m = metrics.request_metrics(months=3, now=NOW)  # April to June: the 10, 20, 36 and 75 day requests all closed then
    assert m.answered == 4
    m = metrics.request_metrics(months=2, now=NOW)  # May and June: closed in 20, 36 and 75 days
    assert m.answered == 3 and m.median_days == pytest.approx(36)


def test_no_answered_request_means_no_median_and_no_share(db):
    m = metrics.request_metrics(now=NOW)
    assert (m.received, m.answered, m.median_days, m.share_on_time, m.overdue_now) == (0, 0, None, None, 0)


def test_the_metrics_take_a_fixed_number_of_queries_whatever_the_rows(known, django_assert_max_num_queries):
    with CaptureQueriesContext(connection) as few:
        metrics.request_metrics(now=NOW)
    assert len(few.captured_queries) <= 5
    eu = JurisdictionFactory(code="FR")
    for day in range(1, 29):
        for right in (Right.ACCESS, Right.ERASURE):
            received = at(f"2026-02-{day:02d}")
            RightsRequestFactory(
                right=right,
                jurisdiction=eu,
                received_at=received,
                due_at=received + timedelta(days=30),
                status=Status.COMPLETED,
                closed_at=received + timedelta(days=day),
            )
    with django_assert_max_num_queries(len(few.captured_queries)):
        metrics.request_metrics(now=NOW)


def test_the_chart_geometry_stacks_each_month_and_labels_every_bar():
    chart = metrics.stacked_bar_chart(
        title="t", labels=["Jan", "Feb"], series={"a": [1, 2], "b": [3, 0]}, names={"a": "A", "b": "B"}, height=200
    )
    assert chart.ticks[-1].label == "5"  # 1 + 3 = 4 rounds up to 5
    assert [bar.title for bar in chart.bars] == ["Jan, A: 1", "Jan, B: 3", "Feb, A: 2"]
    jan_a, jan_b, _ = chart.bars
    assert jan_b.y + jan_b.height == pytest.approx(jan_a.y, abs=0.2)  # stacked
    assert jan_a.y + jan_a.height == pytest.approx(chart.plot_bottom, abs=0.2)
    assert [item.label for item in chart.legend] == ["A", "B"]
    assert chart.table_rows == [["Jan", 1, 3], ["Feb", 2, 0]]


# --- The page ---------------------------------------------------------------------------------------------------


def test_the_metrics_page_shows_the_figures_and_three_inline_svg_charts(client, known, monkeypatch):
    client.force_login(staff_in_role("DPO"))
    monkeypatch.setattr("django.utils.timezone.now", lambda: NOW)
    response = client.get(reverse(METRICS_URL))
    assert response.status_code == 200
    html = response.content.decode()
    page = html.split('id="content-main"')[1].split("<!-- END Content -->")[0]
    assert page.count("<svg") == 3 and "<script" not in page
    assert 'class="metric-on-time"><span class="po-value">75%' in html
    assert "28.0</span>median days to close" in html
    assert "overdue now (of 2 open)" in html and "?queue=overdue" in html
    assert "<title>May 2026, Erasure: 1</title>" in html
    assert response.context["months"] == 12
    assert client.get(reverse(METRICS_URL) + "?months=24").context["months"] == 24
    assert client.get(reverse(METRICS_URL) + "?months=zzz").context["months"] == 12


def test_the_metrics_page_takes_the_same_queries_for_few_and_many_requests(client, known):
    client.force_login(staff_in_role("DPO"))
    with CaptureQueriesContext(connection) as few:
        client.get(reverse(METRICS_URL))
    RightsRequestFactory.create_batch(30, jurisdiction=JurisdictionFactory(code="DE"), status=Status.COMPLETED)
    with CaptureQueriesContext(connection) as many:
        client.get(reverse(METRICS_URL))
    assert len(many.captured_queries) == len(few.captured_queries)


@pytest.mark.parametrize("role", ["DPO", "Privacy analyst", "Support agent", "Auditor"])
def test_every_role_that_reads_requests_opens_the_metrics(client, known, role):
    client.force_login(staff_in_role(role))
    assert client.get(reverse(METRICS_URL)).status_code == 200


def test_staff_who_cannot_read_requests_are_refused_the_metrics(client, known):
    client.force_login(staff_with_permissions("inventory.view_purpose"))
    assert client.get(reverse(METRICS_URL)).status_code == 403
