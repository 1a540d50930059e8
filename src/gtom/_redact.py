"""Keeping secrets out of messages.

`redact` masks what a URL carries that is secret, whatever its scheme (``mongodb://``,
``redis://``, ``nats://``, ``https://``, ...): the ``user:password@`` part, and the value of every
query option whose name says it holds a secret (``password``, ``tlsCertificateKeyFilePassword``,
``authMechanismProperties``, tokens, keys, secrets). `Scrubber` also masks given values — the
daemon's configured header values and HMAC secret — wherever they appear, e.g. in a webhook's
answer that echoes the request.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["MASK", "Scrubber", "redact", "shown", "uri_error"]

MASK = "***"
#: ``scheme://userinfo@``: the user info runs to the last ``@`` of the URL (a password may hold
#: an unescaped ``@`` or ``/`` in a URL that is wrong anyway), so everything before it is masked.
_CREDENTIALS = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://)[^\s\"'<>]*@")
#: URI options holding secrets (their names contain one of these, in any case).
_SECRET_OPTION = re.compile(
    r"([?&;][^=&;\s\"'<>]*(?:pass|secret|token|credential|authmechanismproperties|apikey|"
    r"api_key|signature|[_-]key)[^=&;\s\"'<>]*=)[^&;\s\"'<>]*",
    re.IGNORECASE,
)
#: The longest value an error message echoes.
SHOWN_MAX = 120


def redact(text: str) -> str:
    """``text`` with the credentials and secret options of every URL in it masked."""
    if "://" not in text and "=" not in text:
        return text
    return _SECRET_OPTION.sub(rf"\g<1>{MASK}", _CREDENTIALS.sub(rf"\g<1>{MASK}@", text))


def shown(value: object, limit: int = SHOWN_MAX) -> str:
    """``repr(value)`` for a message, cut to ``limit`` characters (saying how long it was)."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text):,} characters)"


def uri_error(uri: str, error: BaseException) -> str:
    """Why pymongo refused the connection string ``uri``, without its password.

    Where ``uri`` has user info (an ``@``), pymongo's own words may quote part of a password
    it could not parse, so a hint replaces them.
    """
    if "@" in uri:
        return (
            "check its form: USER:PASSWORD@HOST[:PORT],... after the scheme, then /[DB][?OPTIONS]; "
            "a user name or password holding ':', '/', '@' or '%' must be percent-encoded"
        )
    return redact(shown(str(error), 200)[1:-1])


class Scrubber:
    """Masks URL credentials, secret options, and the given secret values in any text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        """Mask ``secrets`` too (values shorter than 4 characters are ignored: too common)."""
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        """``text`` with every secret masked."""
        text = redact(text)
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text
