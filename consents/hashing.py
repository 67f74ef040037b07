"""Keyed hashes of request details (IP address, user agent) for consent and acceptance records."""

from privacyops.privacy.strategies import pseudonym


def keyed_hash(value: str | None, *, scope: str) -> str:
    """A keyed HMAC of an IP address or user agent: lets us tell whether two records came from the same
    place without ever storing where (an empty value gives an empty hash)."""
    if not value:
        return ""
    return pseudonym(value, scope=f"consents:{scope}")
