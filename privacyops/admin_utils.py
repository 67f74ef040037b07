"""Helpers every app's workbench shares: a status badge, admin URLs, a refusal's messages, the object of
a custom screen, and paging for tables too big to count.

Custom screens (`get_urls()` views) find their object with `admin_object_or_404`, as the stock change view
does (`ModelAdmin.get_object`: the admin's own queryset, the id unquoted and converted by the primary key):
a malformed id (a NUL, a non-number, ten thousand digits, an encoded `..%2f`) finds nothing and answers 404,
never a 500 (issue 16).

Tables too big to count: a changelist counts its rows to draw the paginator. On a table of tens of millions of access-log rows an
exact COUNT(*) reads the whole table (PostgreSQL keeps no row count), on every page view. So:
- an unfiltered list on PostgreSQL takes the planner's estimate (`pg_class.reltuples`, kept fresh by
  autovacuum/ANALYZE) when it says the table is large, and counts exactly only a small table;
- a filtered or searched list counts at most COUNT_CAP rows (`SELECT count(*) FROM (... LIMIT cap)`), which
  stops early however many rows match;
- elsewhere (SQLite) the same cap applies.
The page shows "about N" in effect: the last page link may be approximate, which is the price of a list
that opens in milliseconds. Pair it with `show_full_result_count = False`, which drops the changelist's
second, unfiltered count.
"""

from __future__ import annotations

from functools import cached_property

from django.contrib.admin.utils import unquote
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db import connections
from django.http import Http404
from django.urls import reverse
from django.utils.html import format_html

# The badge colours privacyops/templates/admin/base_site.html defines; anything else shows as info.
BADGE_SEVERITIES = frozenset({"info", "ok", "amber", "red"})

COUNT_CAP = 10_000  # rows counted exactly at most, for filtered lists: 100 pages of 100
ESTIMATE_ABOVE = 50_000  # an unfiltered table the planner thinks larger than this is not counted


def badge(text: str, severity: str, *, title: str = ""):
    """A coloured label (a status, a due date): `severity` is one of BADGE_SEVERITIES, else info."""
    severity = severity if severity in BADGE_SEVERITIES else "info"
    if title:
        return format_html('<span class="po-badge po-badge-{}" title="{}">{}</span>', severity, title, text)
    return format_html('<span class="po-badge po-badge-{}">{}</span>', severity, text)


def admin_url(name: str, *args) -> str:
    """The admin URL named `name` ("requests_rightsrequest_change"), with its arguments."""
    return reverse(f"admin:{name}", args=args)


def admin_url_for(app_label: str):
    """`admin_url` for one app's names: `_url = admin_url_for("retention")`, then `_url("retentionrule_change", pk)`."""

    def url(name: str, *args) -> str:
        return admin_url(f"{app_label}_{name}", *args)

    return url


def validation_messages(exc: ValidationError) -> list[str]:
    """Every message of a service's refusal, field errors included, to show to staff one by one."""
    return [m for messages_ in getattr(exc, "message_dict", {"": exc.messages}).values() for m in messages_]


def table_row_estimate(model, *, using: str = "default") -> int | None:
    """The planner's row estimate for `model`'s table on PostgreSQL; None elsewhere or when never analysed."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)", [model._meta.db_table])
        row = cursor.fetchone()
    if row is None or row[0] is None or row[0] < 0:  # -1: never vacuumed or analysed (PostgreSQL 14+)
        return None
    return int(row[0])


class EstimatedCountPaginator(Paginator):
    """A paginator for huge tables: the planner's estimate when unfiltered, else a count capped at COUNT_CAP."""

    count_cap = COUNT_CAP
    estimate_above = ESTIMATE_ABOVE

    @cached_property
    def count(self):
        queryset = self.object_list
        query = getattr(queryset, "query", None)
        if query is None:  # a list, not a queryset
            return len(queryset)
        if not query.where:  # the whole table: no filter, no search
            estimate = table_row_estimate(queryset.model, using=queryset.db)
            if estimate is not None and estimate > self.estimate_above:
                return estimate
        return queryset.order_by()[: self.count_cap].count()


class ReadOnlyAdminMixin:
    """A workbench page that shows rows and never writes them: the audit trail, chat data, purge runs.

    Their rows change only through services (append-only chains, erasure, the purge engine), so the admin
    offers no add, change or delete whatever the user's permissions say.
    """

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def admin_object_or_404(model_admin, request, object_id: str, *, queryset=None):
    """The object a custom admin screen works on, found the way the stock views find theirs; 404 otherwise.

    As `ModelAdmin.get_object` does: the id is unquoted and converted by the primary key's own `to_python`,
    and what does not convert finds nothing. The rows are the admin's `get_queryset(request)` (what its
    changelist shows), or `queryset` when the screen needs more joined in. A NUL never reaches the query:
    PostgreSQL refuses it in text, which would fail instead of finding nothing."""
    queryset = model_admin.get_queryset(request) if queryset is None else queryset
    object_id = unquote(object_id)
    model = queryset.model
    try:
        if "\x00" in object_id:
            raise ValueError("NUL in an id")
        return queryset.get(pk=model._meta.pk.to_python(object_id))
    except (model.DoesNotExist, ValidationError, ValueError):
        raise Http404(f"No {model._meta.verbose_name} with this id.") from None
