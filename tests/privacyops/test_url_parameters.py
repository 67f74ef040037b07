"""Issue 16: no URL answers 500 to a bad parameter, whoever asks.

The test walks every pattern of the URLconf (the admin's too: `admin.site.urls` includes every ModelAdmin's
`get_urls()`), puts bad values where the pattern takes a parameter and asks for each URL with GET and with
a POST whose body is junk, as an anonymous visitor, as a data subject and as a DPO. Anything but a
5xx passes: a 404, a 400, a redirect to the sign-in page, a 403, a 405, a form that shows its errors.

The values are those an outside probe sends: a NUL (PostgreSQL refuses it in text, so on SQLite it passes
where PostgreSQL fails: run both legs), a non-number, 10,000 characters, an encoded path traversal and a
well-formed reference or id that does not exist. A pattern with several parameters is also asked with one
bad parameter at a time and an existing request's id in the others, so a view that finds its first object
still validates the second.
"""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from tests.factories.accounts import StaffFactory, UserFactory
from tests.factories.inventory import staff_in_role
from tests.factories.requests import RightsRequestFactory

BAD_VALUES = (
    "1%00",  # NUL after a number
    "DSR-2026-000001%00",  # NUL after a well-formed reference
    "abc",  # not a number
    "9" * 10_000,  # over-long, and a number beyond any integer column (and Python's int() of a string)
    "..%2f..%2f",  # encoded path traversal
    "987654321",  # a well-formed id nobody has
    "DSR-2026-999999",  # a well-formed reference nobody has
)
# A NUL, a non-number and over-long text under names views commonly read (a form that reads none of them
# sees an empty one).
JUNK_BODY = {"junk": "\x00" + "x" * 300, "id": "1\x00", "pk": "abc", "item": "abc", "action": "x" * 300}
# POSTing here ends the session the rest of the walk needs; they take no parameter a probe could abuse.
SKIP_POST = {"admin:logout"}

ROUTE_PARAMETER = re.compile(r"<(?:[^>:]+:)?[^>]+>")
REGEX_GROUP = re.compile(r"\(\?P<[^>]+>[^)]*\)")


def _pieces(pattern) -> tuple[list[str], int]:
    """A pattern as literal pieces between parameters, and how many parameters it has."""
    text = str(pattern.pattern)
    if pattern.pattern.__class__.__name__ == "RegexPattern":
        text = text.lstrip("^").rstrip("$").replace("\\Z", "")
        text = text.replace("\\.", ".").replace("\\-", "-").replace("\\/", "/")
        pieces = REGEX_GROUP.split(text)
    else:
        pieces = ROUTE_PARAMETER.split(text)
    return pieces, len(pieces) - 1


def url_patterns(resolver=None, prefix: list[str] | None = None, name_prefix: str = ""):
    """(pieces, name) of every pattern: the literal text between parameters, the parameters left out."""
    resolver = resolver or get_resolver()
    prefix = prefix or [""]
    for entry in resolver.url_patterns:
        pieces, _ = _pieces(entry)
        joined = [*prefix[:-1], prefix[-1] + pieces[0], *pieces[1:]]
        if isinstance(entry, URLResolver):
            namespace = f"{name_prefix}{entry.namespace}:" if entry.namespace else name_prefix
            yield from url_patterns(entry, joined, namespace)
        elif isinstance(entry, URLPattern):
            yield joined, f"{name_prefix}{entry.name or ''}"


def fill(pieces: list[str], values: list[str]) -> str:
    out = pieces[0]
    for value, piece in zip(values, pieces[1:], strict=True):
        out += value + piece
    return "/" + out


def bad_urls(live_id: str):
    """Every URL of the URLconf with bad values in its parameters (each pattern once when it takes none)."""
    seen = set()
    for pieces, name in url_patterns():
        count = len(pieces) - 1
        urls = []
        if count == 0:
            urls.append(fill(pieces, []))
        for value in BAD_VALUES:
            if count == 0:
                break
            urls.append(fill(pieces, [value] * count))
            if count > 1:
                for position in range(count):
                    values = [live_id] * count
                    values[position] = value
                    urls.append(fill(pieces, values))
        for url in urls:
            if url not in seen:
                seen.add(url)
                yield url, name


def _walk(client: Client, login) -> list[str]:
    failures = []
    live = RightsRequestFactory()
    for url, name in bad_urls(str(live.pk)):
        for method in ("GET", "POST") if name not in SKIP_POST else ("GET",):
            login()
            try:
                response = client.get(url) if method == "GET" else client.post(url, JUNK_BODY)
            except Exception as error:  # the test client re-raises what would have been a 500
                failures.append(f"{method} {url[:120]} ({name}): {type(error).__name__}: {str(error)[:200]}")
                continue
            if response.status_code >= 500:
                failures.append(f"{method} {url[:120]} ({name}): {response.status_code}")
    return failures


def _report(failures: list[str]) -> str:
    """One line per pattern that failed (the first URL that showed it), then how many requests failed."""
    first = {}
    for failure in failures:
        first.setdefault(failure.split(" (", 1)[1].split(")", 1)[0], failure)
    return f"{len(failures)} requests answered 5xx, on {len(first)} patterns:\n" + "\n".join(first.values())


@pytest.mark.django_db
def test_bad_url_parameters_never_answer_5xx_to_anonymous_visitors(client):
    failures = _walk(client, lambda: None)
    assert not failures, _report(failures)


@pytest.mark.django_db
def test_bad_url_parameters_never_answer_5xx_to_a_signed_in_subject(client):
    subject = UserFactory()
    failures = _walk(client, lambda: client.force_login(subject))
    assert not failures, _report(failures)


@pytest.mark.django_db
def test_bad_url_parameters_never_answer_5xx_to_a_dpo(client):
    dpo = staff_in_role("DPO", is_superuser=True)
    failures = _walk(client, lambda: client.force_login(dpo))
    assert not failures, _report(failures)


def test_the_walk_covers_the_portal_and_every_custom_admin_screen():
    """The walk reaches the patterns issue 16 names, so a URLconf change cannot quietly shrink it."""
    names = {name for _, name in url_patterns()}
    assert {"requests:detail", "requests:verify", "admin:requests_rightsrequest_authority"} <= names
    assert len(names) > 100
    assert StaffFactory  # the factories module is importable without a database


# Query strings an outside probe sends to list and export screens: a field the model lacks, a value of the
# wrong type for a real lookup, a NUL in the search and in the page number, an unknown ordering.
BAD_QUERIES = ("?status=x", "?id__gt=abc", "?created__gte=notadate", "?q=%00", "?p=%00", "?o=zz", "?_changelist_filters=%00")


@pytest.mark.django_db
def test_bad_filters_on_every_changelist_and_export_screen_never_answer_5xx(client, seeded):
    """The admin's list screens refuse bad filters with their own message; the import-export library's
    export screen built the same list without that guard and answered 500 (issue 16)."""
    from django.contrib import admin

    client.force_login(staff_in_role("DPO", is_superuser=True))
    failures = []
    for model in admin.site._registry:
        base = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        for screen in ("", "export/"):
            for query in BAD_QUERIES:
                try:
                    status = client.get(base + screen + query).status_code
                except Exception as error:
                    status = f"{type(error).__name__}: {str(error)[:120]}"
                if not isinstance(status, int) or status >= 500:
                    failures.append(f"{base}{screen}{query}: {status}")
    assert not failures, "\n".join(failures)


@pytest.mark.django_db
def test_an_export_with_a_bad_filter_goes_back_to_the_list_with_its_message(client, seeded):
    client.force_login(staff_in_role("DPO", is_superuser=True))
    response = client.get("/admin/inventory/purpose/export/?status=x")
    assert response.status_code == 302 and response["Location"] == "/admin/inventory/purpose/?e=1"
    assert client.get("/admin/inventory/purpose/export/").status_code == 200
