"""privacyops.jsonbody: what a client's JSON body may not be (issue 15), without any view in between."""

from __future__ import annotations

import pytest

from privacyops.jsonbody import MAX_DEPTH, JsonBodyError, json_body_parse


def parse(raw: bytes, **kwargs):
    return json_body_parse(raw, max_bytes=kwargs.pop("max_bytes", 1 << 20), **kwargs)


def test_an_honest_body_parses_as_json_loads_would():
    raw = b'{"checks": [{"subject_ref": "a", "purpose": "b", "n": -12, "x": 1.5e3, "ok": true, "none": null}]}'
    assert parse(raw) == {"checks": [{"subject_ref": "a", "purpose": "b", "n": -12, "x": 1500.0, "ok": True, "none": None}]}


def test_equal_keys_in_different_objects_are_not_duplicates():
    assert parse(b'[{"a": 1}, {"a": 2}]') == [{"a": 1}, {"a": 2}]


@pytest.mark.parametrize("depth", [1, MAX_DEPTH])
def test_nesting_up_to_the_limit_is_read(depth):
    assert parse(b"[" * depth + b"]" * depth) is not None


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 5_000, 200_000])
def test_nesting_past_the_limit_is_refused_whatever_the_depth(depth):
    with pytest.raises(JsonBodyError) as error:
        parse(b"[" * depth + b"]" * depth)
    assert error.value.status == 400 and "deeper" in error.value.message


def test_a_limit_below_the_default_is_kept():
    with pytest.raises(JsonBodyError):
        parse(b"[[[1]]]", max_depth=2)


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b'{"a": 1, "b": 2, "a": 3}', "more than once"),
        (b"1" * 65, "digits"),
        (b"-" + b"1" * 65, "digits"),
        (b"1e400", "too large"),
        (b"-1e400", "too large"),
        (b"Infinity", "not a JSON value"),
        (b"NaN", "not a JSON value"),
        (b'"\xc3\x28"', "not UTF-8"),
        (b"{'a': 1}", "not JSON"),
        (b"", "not JSON"),
    ],
)
def test_bad_bodies_are_refused_with_a_reason(raw, words):
    with pytest.raises(JsonBodyError) as error:
        parse(raw)
    assert words in error.value.message and error.value.status == 400


def test_size_is_checked_first_and_answers_413():
    with pytest.raises(JsonBodyError) as error:
        parse(b"[" * 100, max_bytes=99)
    assert error.value.status == 413


def test_sixty_four_digits_are_still_a_number():
    assert parse(b"9" * 64) == int("9" * 64)
