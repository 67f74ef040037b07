"""Strict parsing of JSON request bodies: any body a client sends gets a clear 4xx, never a 500.

`json.loads` alone is not safe to hand a client's bytes: a body nested tens of thousands of levels deep
raises RecursionError (a 500), `1e999` quietly becomes infinity, `NaN` is accepted although JSON has no
such value, a 5,000-digit integer raises a ValueError about Python's conversion limit, and of two equal
keys the last silently wins, so a client and we may read different values from the same document.

`json_body_parse` refuses all of these with a `JsonBodyError` that carries the status (413 for a body over
the limit, 400 otherwise) and a message meant for the client. The limits are deliberately far beyond any
honest body of ours (API_MAX_BODY_BYTES, 1 MiB by default; 32 levels; 64 digits) and are stated in
docs/consent-api.md. Parsing is the C scanner's with hooks, so an honest body costs about what it did; the
depth is measured after parsing without recursion, and nesting deep enough to exhaust the scanner's own
recursion guard is reported as too deep as well.
"""

from __future__ import annotations

import json
import math

MAX_DEPTH = 32
MAX_NUMBER_DIGITS = 64


class JsonBodyError(Exception):
    """A body we will not read, with the HTTP status to answer and a message for the client."""

    def __init__(self, message: str, *, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


def _pairs(pairs: list[tuple[str, object]]) -> dict:
    data = dict(pairs)
    if len(data) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise JsonBodyError(f"The key {key[:64]!r} appears more than once in one object.")
            seen.add(key)
    return data


def _integer(text: str) -> int:
    if len(text.lstrip("-")) > MAX_NUMBER_DIGITS:
        raise JsonBodyError(f"A number has more than {MAX_NUMBER_DIGITS} digits.")
    return int(text)


def _real(text: str) -> float:
    if len(text) > MAX_NUMBER_DIGITS + 8:
        raise JsonBodyError(f"A number has more than {MAX_NUMBER_DIGITS} digits.")
    value = float(text)
    if not math.isfinite(value):
        raise JsonBodyError("A number is too large.")
    return value


def _constant(name: str):
    raise JsonBodyError(f"{name} is not a JSON value.")


def _depth(value: object) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            break
        stack.extend((child, level + 1) for child in children)
    return deepest


def json_body_parse(raw: bytes, *, max_bytes: int, max_depth: int = MAX_DEPTH) -> object:
    """The JSON value of `raw`, or JsonBodyError: over `max_bytes` (413), not UTF-8, not JSON, nested deeper
    than `max_depth`, a duplicate key, NaN/Infinity, or a number too long or too large (400)."""
    if len(raw) > max_bytes:
        raise JsonBodyError(f"The body is larger than {max_bytes} bytes.", status=413)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise JsonBodyError(f"The body is not UTF-8 (invalid byte at position {error.start}).") from None
    try:
        value = json.loads(text, object_pairs_hook=_pairs, parse_int=_integer, parse_float=_real, parse_constant=_constant)
    except RecursionError:
        raise JsonBodyError(f"The body is nested deeper than {max_depth} levels.") from None
    except json.JSONDecodeError as error:
        raise JsonBodyError(f"The body is not JSON: {error.msg} (line {error.lineno}, column {error.colno}).") from None
    if _depth(value) > max_depth:
        raise JsonBodyError(f"The body is nested deeper than {max_depth} levels.")
    return value
