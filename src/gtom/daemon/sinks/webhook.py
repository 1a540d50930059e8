"""The ``webhook`` sink: each batch POSTed as one JSON array, optionally signed (HMAC-SHA256)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from urllib.parse import quote, urlsplit, urlunsplit

from gtom.daemon.sinks.base import Event, SinkError, SinkRejectedError, SinkUnavailableError

try:
    import httpx
except ImportError as e:  # pragma: no cover - httpx comes with the daemon extra
    raise ImportError("the webhook sink needs httpx: pip install 'gtom[daemon]'") from e

__all__ = ["WebhookSink", "safe_url", "signature"]

#: Statuses worth sending the same batch again for: the server may accept it later.
_RETRYABLE = frozenset({408, 429})
_EXCERPT = 200
# Printable ASCII stays as is in the event id headers; anything else is percent-encoded.
_HEADER_SAFE = "".join(chr(c) for c in range(0x21, 0x7F))


def safe_url(url: str) -> str:
    """``url`` without its ``user:password@``, for messages and logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable url>"
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=netloc))


def signature(secret: str, body: bytes) -> str:
    """The ``X-Gtom-Signature`` value of ``body``: ``sha256=`` and its hex HMAC-SHA256."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _header_value(text: str) -> str:
    return quote(text, safe=_HEADER_SAFE)


def _reason(error: BaseException) -> str:
    return str(error) or type(error).__name__


class WebhookSink:
    """POSTs each batch to ``url`` as a JSON array of its events, in order, one request a batch.

    The request carries ``Content-Type: application/json``, ``X-Gtom-Batch-Size``,
    ``X-Gtom-First-Event-Id`` and ``X-Gtom-Last-Event-Id`` (non-ASCII characters of an id are
    percent-encoded) and, with a ``secret``, ``X-Gtom-Signature: sha256=<hex HMAC-SHA256 of the
    body>``. A 2xx answer confirms the batch; 408, 429 and 5xx, timeouts and network errors are
    retryable `SinkError` errors; any other status (redirects are not followed) is a
    `SinkRejectedError`. Messages never contain the secret or the URL's credentials.
    """

    name: str = "webhook"

    def __init__(
        self,
        url: str,
        *,
        secret: str | None = None,
        timeout: float = 10.0,
        headers: Mapping[str, str] | None = None,
        verify_tls: bool = True,
    ) -> None:
        """POST to ``url``, signing with ``secret``, giving each request ``timeout`` seconds."""
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {timeout}")
        self.url = url
        self.safe_url = safe_url(url)
        self._secret = secret
        try:
            scheme = httpx.URL(url).scheme
        except httpx.InvalidURL as e:
            raise ValueError(f"bad webhook URL {self.safe_url!r}: {self._scrub(str(e))}") from e
        if scheme not in ("http", "https"):
            raise ValueError(f"the webhook URL must be http:// or https://, got {self.safe_url!r}")
        self.timeout = timeout
        self.verify_tls = verify_tls
        self._headers = dict(headers or {})
        self.sender: str | None = None
        """In a cluster: the leader that sends (``host:pid:nonce term N``), as header
        ``X-Gtom-Sender`` of every request."""
        self._client: httpx.AsyncClient | None = None

    def _scrub(self, text: str) -> str:
        """``text`` with the secret and the URL's credentials masked."""
        if self.url != self.safe_url:
            text = text.replace(self.url, self.safe_url)
        userinfo = urlsplit(self.url).netloc.rpartition("@")[0] if "@" in self.url else ""
        for hidden in (self._secret, userinfo, userinfo.partition(":")[2]):
            if hidden:
                text = text.replace(hidden, "***")
        return text

    def _new_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            timeout=self.timeout,
            verify=self.verify_tls,
            headers=self._headers,
            follow_redirects=False,
        )

    async def open(self) -> None:
        """Check that something answers HTTP at the URL (any status counts, even 404 or 405)."""
        if self._client is None:
            self._client = self._new_client()
        try:
            response = await self._client.request("OPTIONS", self.url)
            await response.aclose()
        except httpx.TimeoutException as e:
            await self.close()
            raise SinkUnavailableError(
                f"cannot reach the webhook at {self.safe_url}: no answer within {self.timeout}s"
            ) from e
        except httpx.HTTPError as e:
            await self.close()
            raise SinkUnavailableError(
                f"cannot reach the webhook at {self.safe_url}: {self._scrub(_reason(e))}"
            ) from e

    def body(self, batch: Sequence[Event]) -> bytes:
        """The request body for ``batch``: a JSON array of the events' payloads, in order."""
        payloads = [event.payload for event in batch]
        if not payloads:
            return b"[]"
        # The brackets go on the first and last payloads: the body is then made in one copy.
        payloads[0] = b"[" + payloads[0]
        payloads[-1] += b"]"
        return b",".join(payloads)

    async def send(self, batch: Sequence[Event]) -> None:
        """POST ``batch`` once; return if the answer is 2xx, else raise a `SinkError`."""
        if not batch:
            return
        if self._client is None:
            self._client = self._new_client()
        body = self.body(batch)
        headers = {
            "Content-Type": "application/json",
            "X-Gtom-Batch-Size": str(len(batch)),
            "X-Gtom-First-Event-Id": _header_value(batch[0].id),
            "X-Gtom-Last-Event-Id": _header_value(batch[-1].id),
        }
        if self._secret is not None:
            headers["X-Gtom-Signature"] = signature(self._secret, body)
        if self.sender is not None:
            headers["X-Gtom-Sender"] = self.sender
        try:
            response = await self._client.post(self.url, content=body, headers=headers)
        except httpx.TimeoutException as e:
            raise SinkUnavailableError(
                f"the webhook at {self.safe_url} did not answer within {self.timeout}s"
            ) from e
        except httpx.TransportError as e:
            raise SinkUnavailableError(
                f"cannot reach the webhook at {self.safe_url}: {self._scrub(_reason(e))}"
            ) from e
        except httpx.HTTPError as e:
            raise SinkError(
                f"POST to the webhook at {self.safe_url} failed: {self._scrub(_reason(e))}"
            ) from e
        status = response.status_code
        if 200 <= status < 300:
            return
        answer = f"the webhook at {self.safe_url} answered {status} {response.reason_phrase}"
        if status in _RETRYABLE or status >= 500:
            raise SinkError(answer, retryable=True)
        excerpt = response.content[: _EXCERPT * 4].decode("utf-8", "replace")[:_EXCERPT]
        raise SinkRejectedError(f"{answer}: {self._scrub(excerpt)!r}")

    async def close(self) -> None:
        """Close the HTTP client and its connections (idempotent)."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
