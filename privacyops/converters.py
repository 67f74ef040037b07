"""Path converters for parameters that reach a query or a token check (issue 16).

A URL parameter is text a stranger chooses. `<str:...>` lets through anything but a slash: a NUL byte
(PostgreSQL refuses it in a text literal, so the query fails with a 500 instead of finding nothing), ten
thousand characters, an encoded `..%2f`. These converters accept only the alphabet and the length the value
can have, so anything else is a 404 from the resolver, before a view or a query sees it. Declaring the shape
in the URLconf is the one place that covers every view behind the pattern.

They are registered once, when this module is first imported (Django warns when a name is registered twice);
a URLconf that uses them imports it.
"""

from django.urls import register_converter


class ReferenceConverter:
    """A rights request's reference: DSR-<year>-<number> (RightsRequest.reference is 20 characters at most)."""

    regex = "[A-Za-z0-9-]{1,20}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


class TokenConverter:
    """A token from a link: `secrets.token_urlsafe` text or a `django.core.signing` value (URL-safe base64,
    colons between its parts, a leading dot when compressed). 500 characters is far more than either is."""

    regex = "[A-Za-z0-9_:.-]{1,500}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


class LabelConverter:
    """A code or label of the register and of policy versions: a letter or digit, then letters, digits,
    dots, underscores and dashes (policies.admin.LABEL_PATTERN), 100 characters at most."""

    regex = "[A-Za-z0-9][A-Za-z0-9._-]{0,99}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(LabelConverter, "label")
register_converter(ReferenceConverter, "reference")
register_converter(TokenConverter, "token")
