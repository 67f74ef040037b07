"""Reads for the rights-request workbench: a subject's data summary and the metrics page (POLICY-MAP IX).

Invariants:
- The data summary names no model: it walks the personal-data registry (`privacyops.privacy.registry`) and
  counts, for every declaration that can find a subject's rows (`Declaration.subject_q`), the rows of the
  request's subject: one COUNT per such model plus two lookups for the category and store names, however
  many rows there are. It is personal data about the subject (what we hold on them), so it is only opened
  through `subject_data_summary_open`, which writes the audit event "viewed personal data" in the same
  transaction as the read; the admin checks `requests.view_personal_data_rightsrequest` before calling it.
- The metrics aggregate in the database: a fixed number of queries (five at most) whatever the number of
  requests; only the month buckets and two middle durations (for the median) come back to Python.
- Months are calendar months in `DEADLINE_TIME_ZONE`, where the clocks count days, so a request received
  late on the last day of a month there is counted in that month on every server.
- "Answered" requests are those closed as completed, partially completed or rejected: a withdrawn,
  duplicate or unverified request was never answered, and counting it would flatter the times to close.
  Closed on time means closed at or before the deadline in force (the extension when there is one; clock-
  stopping holds already pushed `due_at` when they ended).
- The charts are drawn here as geometry (rectangles, ticks, labels) and rendered as inline SVG by the
  template: no JavaScript, nothing fetched at run time.
"""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import Count, DurationField, ExpressionWrapper, F, Q
from django.db.models.functions import Coalesce, TruncMonth
from django.utils import timezone

from privacyops.audit import audit_personal_data_viewed

from . import deadlines, selectors
from .models import OPEN_STATUSES, Right, RightsRequest, Status

ANSWERED = (Status.COMPLETED, Status.PARTIALLY_COMPLETED, Status.REJECTED)
DEFAULT_MONTHS = 12
MAX_MONTHS = 36


# --- A subject's data summary -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelCount:
    """How many rows of one registered model belong to the subject."""

    label: str  # app_label.Model
    name: str  # the model's verbose name (plural)
    category: str  # the row's category code (the one retention follows)
    store: str  # data store code
    rows: int


@dataclass(frozen=True)
class Total:
    code: str
    name: str
    rows: int


@dataclass
class DataSummary:
    models: list[ModelCount] = field(default_factory=list)
    categories: list[Total] = field(default_factory=list)
    stores: list[Total] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(m.rows for m in self.models)


def subject_data_summary(*, subject) -> DataSummary:
    """Records held on `subject` (an account) per registered model, and their totals per data category and
    per data store (PM-I, PM-IX-1). Models that could hold the subject's rows but hold none are listed
    with 0, so the DPO sees where we looked. Reads only: see `subject_data_summary_open` for the audited
    opening."""
    from inventory.models import DataCategory, DataStore
    from inventory.selectors import subject_model_counts

    summary = DataSummary()
    if subject is None:
        return summary
    for declaration, rows in subject_model_counts(subject):
        summary.models.append(
            ModelCount(
                label=declaration.label,
                name=str(declaration.model._meta.verbose_name_plural),
                category=declaration.category,
                store=declaration.store_code,
                rows=rows,
            )
        )
    category_names = dict(DataCategory.objects.filter(code__in={m.category for m in summary.models}).values_list("code", "name"))
    store_names = dict(DataStore.objects.filter(code__in={m.store for m in summary.models}).values_list("code", "name"))
    summary.categories = _totals(summary.models, "category", category_names)
    summary.stores = _totals(summary.models, "store", store_names)
    return summary


def _totals(counts: list[ModelCount], attribute: str, names: dict[str, str]) -> list[Total]:
    rows: dict[str, int] = {}
    for count in counts:
        code = getattr(count, attribute)
        rows[code] = rows.get(code, 0) + count.rows
    return [Total(code=code, name=names.get(code, code), rows=n) for code, n in sorted(rows.items())]


def subject_data_summary_open(*, rights_request: RightsRequest, actor) -> DataSummary:
    """Open the summary of the data held on a request's subject, and record that `actor` viewed it
    (audit "personal_data.viewed", what "rights_request_summary": the request's reference and the totals, never the
    data). The caller checks `requests.view_personal_data_rightsrequest` first."""
    with transaction.atomic():
        summary = subject_data_summary(subject=rights_request.subject)
        audit_personal_data_viewed(
            actor=actor,
            subject=rights_request.subject_ref,
            what="rights_request_summary",
            target=rights_request,
            details={"reference": rights_request.reference, "models": len(summary.models), "rows": summary.rows},
        )
    return summary


# --- Metrics ------------------------------------------------------------------------------------------------------


@dataclass
class RequestMetrics:
    months: list[datetime.date]  # first day of each month, oldest first
    by_right: dict[str, list[int]]  # right value -> requests received per month
    by_jurisdiction: dict[str, list[int]]  # jurisdiction code -> requests received per month
    answered_by_month: list[int]
    on_time_by_month: list[int]
    answered: int
    on_time: int
    median_days: float | None
    overdue_now: int
    open_now: int

    @property
    def received(self) -> int:
        return sum(sum(counts) for counts in self.by_right.values())

    @property
    def share_on_time(self) -> float | None:
        return self.on_time / self.answered if self.answered else None

    @property
    def share_on_time_by_month(self) -> list[float | None]:
        pairs = zip(self.on_time_by_month, self.answered_by_month, strict=True)
        return [on_time / answered if answered else None for on_time, answered in pairs]


def month_starts(*, months: int, now: datetime.datetime) -> list[datetime.date]:
    """The first days of the last `months` calendar months in the deadline zone, the current one last."""
    local = timezone.localtime(now, deadlines.deadline_zone()).date()
    index = local.year * 12 + local.month - 1
    return [datetime.date((i // 12), (i % 12) + 1, 1) for i in range(index - months + 1, index + 1)]


def request_metrics(*, months: int = DEFAULT_MONTHS, now: datetime.datetime | None = None) -> RequestMetrics:
    """The workbench's metrics over the last `months` calendar months (the current one included): requests
    received per month by right and by jurisdiction, answered requests (closed in the window) on time and
    their median days to close, and the requests overdue now. At most five queries."""
    now = now or timezone.now()
    months = max(1, min(int(months), MAX_MONTHS))
    zone = deadlines.deadline_zone()
    starts = month_starts(months=months, now=now)
    since = datetime.datetime.combine(starts[0], datetime.time.min, tzinfo=zone)
    position = {start: i for i, start in enumerate(starts)}

    def series(rows, key) -> dict[str, list[int]]:
        result: dict[str, list[int]] = {}
        for row in rows:
            counts = result.setdefault(row[key], [0] * months)
            i = position.get(timezone.localtime(row["month"], zone).date())
            if i is not None:
                counts[i] += row["n"]
        return result

    received = RightsRequest.objects.filter(received_at__gte=since, received_at__lte=now).annotate(
        month=TruncMonth("received_at", tzinfo=zone)
    )
    by_right = series(received.values("month", "right").annotate(n=Count("pk")).order_by(), "right")
    by_right = {r: by_right[r] for r in Right.values if r in by_right}  # the rights in their usual order
    by_jurisdiction = series(received.values("month", code=F("jurisdiction__code")).annotate(n=Count("pk")).order_by(), "code")
    by_jurisdiction = dict(sorted(by_jurisdiction.items()))

    on_time_q = Q(closed_at__lte=Coalesce("extended_due_at", "due_at"))
    answered = RightsRequest.objects.filter(status__in=ANSWERED, closed_at__gte=since, closed_at__lte=now)
    closed_rows = (
        answered.annotate(month=TruncMonth("closed_at", tzinfo=zone))
        .values("month")
        .annotate(n=Count("pk"), on_time=Count("pk", filter=on_time_q))
        .order_by()
    )
    answered_by_month, on_time_by_month = [0] * months, [0] * months
    for row in closed_rows:
        i = position.get(timezone.localtime(row["month"], zone).date())
        if i is not None:
            answered_by_month[i] += row["n"]
            on_time_by_month[i] += row["on_time"]
    total_answered = sum(answered_by_month)

    now_counts = selectors.with_effective_due().aggregate(
        overdue=Count("pk", filter=selectors.queue_q("overdue", now=now)),
        open=Count("pk", filter=Q(status__in=sorted(OPEN_STATUSES))),
    )
    return RequestMetrics(
        months=starts,
        by_right=by_right,
        by_jurisdiction=by_jurisdiction,
        answered_by_month=answered_by_month,
        on_time_by_month=on_time_by_month,
        answered=total_answered,
        on_time=sum(on_time_by_month),
        median_days=_median_days(answered, total_answered),
        overdue_now=now_counts["overdue"] or 0,
        open_now=now_counts["open"] or 0,
    )


def _median_days(answered, count: int) -> float | None:
    """The median of closed_at - received_at, in days: the database orders the durations and returns only the
    middle one or two (OFFSET), which works the same on PostgreSQL and SQLite (no percentile aggregate)."""
    if not count:
        return None
    durations = (
        answered.annotate(took=ExpressionWrapper(F("closed_at") - F("received_at"), output_field=DurationField()))
        .order_by("took")
        .values_list("took", flat=True)
    )
    middle = list(durations[(count - 1) // 2 : count // 2 + 1])
    return sum(d.total_seconds() for d in middle) / len(middle) / 86400


# --- Charts (geometry for inline SVG) -----------------------------------------------------------------------------

# Distinguishable in colour and in grey; cycled when there are more series.
PALETTE = ("#4f8ad1", "#e2a400", "#6cbf7d", "#d1382b", "#8e6cc2", "#3fb1b5", "#b5651d", "#9aa5b1", "#d46fa7", "#2f5d8a")


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    colour: str
    title: str


@dataclass(frozen=True)
class Tick:
    y: float
    label: str


@dataclass(frozen=True)
class XLabel:
    x: float
    label: str


@dataclass(frozen=True)
class LegendItem:
    label: str
    colour: str


@dataclass
class BarChart:
    title: str
    width: int
    height: int
    plot_left: int
    plot_right: int
    plot_bottom: int
    bars: list[Rect]
    ticks: list[Tick]
    x_labels: list[XLabel]
    legend: list[LegendItem]
    table_head: list[str]  # the same numbers as a table, for reading and for screen readers
    table_rows: list[list]


def _nice_max(value: float) -> float:
    """A round top for the y axis (1, 2, 5 x 10^n) at or above `value`."""
    if value <= 0:
        return 1
    power = 10 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= value)


def stacked_bar_chart(
    *,
    title: str,
    labels: list[str],
    series: dict[str, list[float]],
    names: dict[str, str] | None = None,
    y_max: float | None = None,
    unit: str = "",
    width: int = 760,
    height: int = 260,
) -> BarChart:
    """One bar per label, stacked by series; `y_max` fixes the axis (100 for percentages), else a round
    number above the tallest bar."""
    names = names or {}
    left, right, top, bottom = 44, width - 8, 10, height - 28
    totals = [sum(values[i] or 0 for values in series.values()) for i in range(len(labels))]
    top_value = y_max if y_max is not None else _nice_max(max(totals, default=0))
    scale = (bottom - top) / top_value
    slot = (right - left) / max(len(labels), 1)
    bar_width = slot * 0.7
    colours = {key: PALETTE[i % len(PALETTE)] for i, key in enumerate(series)}
    bars: list[Rect] = []
    for i, label in enumerate(labels):
        y = bottom
        for key, values in series.items():
            value = values[i] or 0
            if not value:
                continue
            h = value * scale
            y -= h
            shown = f"{value:g}{unit}" if isinstance(value, float) else f"{value}{unit}"
            bars.append(
                Rect(
                    x=round(left + slot * i + (slot - bar_width) / 2, 1),
                    y=round(y, 1),
                    width=round(bar_width, 1),
                    height=round(h, 1),
                    colour=colours[key],
                    title=f"{label}, {names.get(key, key)}: {shown}",
                )
            )
    ticks = [Tick(y=round(bottom - (top_value * k / 4) * scale, 1), label=f"{top_value * k / 4:g}{unit}") for k in range(5)]
    # Every label when they fit, else every other one.
    step = 1 if slot >= 40 else 2
    x_labels = [XLabel(x=round(left + slot * i + slot / 2, 1), label=label) for i, label in enumerate(labels) if i % step == 0]
    legend = [LegendItem(label=names.get(key, key), colour=colours[key]) for key in series] if len(series) > 1 else []
    return BarChart(
        title=title,
        width=width,
        height=height,
        plot_left=left,
        plot_right=right,
        plot_bottom=bottom,
        bars=bars,
        ticks=ticks,
        x_labels=x_labels,
        legend=legend,
        table_head=["Month", *(names.get(key, key) for key in series)],
        table_rows=[[label, *(values[i] for values in series.values())] for i, label in enumerate(labels)],
    )


def metrics_charts(metrics: RequestMetrics) -> list[BarChart]:
    labels = [f"{m:%b %Y}" for m in metrics.months]
    right_names = dict(Right.choices)
    share = [round(s * 100, 1) if s is not None else None for s in metrics.share_on_time_by_month]
    return [
        stacked_bar_chart(
            title="Requests received per month, by right", labels=labels, series=metrics.by_right, names=right_names
        ),
        stacked_bar_chart(title="Requests received per month, by jurisdiction", labels=labels, series=metrics.by_jurisdiction),
        stacked_bar_chart(
            title="Answered requests closed on time, per month of closure",
            labels=labels,
            series={"on_time": share},
            names={"on_time": "closed on time"},
            y_max=100,
            unit="%",
        ),
    ]
