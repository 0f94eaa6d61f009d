"""HTTP for the live intensity providers: the standard library's client, a timeout on every
request, and failures sorted into the few causes a user can act on.

Secrets (an API key, a password, a bearer token) travel in request headers only, never in a
URL, and every message this module builds is passed through `redact` with them.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from typing import Any

USER_AGENT = "carbon-callbacks (live grid intensity)"
_MAX_BODY = 8 * 1024 * 1024  # bytes read at most from one answer

# The causes of a failed request, each warned once per run (`ProviderError.cause`).
UNREACHABLE = "unreachable"
TIMEOUT = "timeout"
AUTH = "auth"
RATE_LIMIT = "rate-limit"
NOT_FOUND = "not-found"
REFUSED = "refused"
SERVER = "server-error"
GARBAGE = "garbage"


class ProviderError(Exception):
    """A provider could not give what was asked.

    Args:
        cause: one of the module's causes (``"auth"``, ``"rate-limit"``...).
        message: plain words for the user, naming the provider; no secret in it.
        retry_after_s: how long the provider asked us to wait (HTTP 429), if it said.
        status: the HTTP status, when there was one.
    """

    def __init__(
        self,
        cause: str,
        message: str,
        *,
        retry_after_s: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.cause = cause
        self.message = message
        self.retry_after_s = retry_after_s
        self.status = status


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every non-empty secret replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def url(base: str, path: str, query: Mapping[str, str] | None = None) -> str:
    """``base`` + ``path`` (each path segment is quoted by the caller) + the query."""
    text = base.rstrip("/") + path
    if query:
        text += "?" + urllib.parse.urlencode(query, safe=':,[]{}"')
    return text


def get_json(
    address: str,
    *,
    name: str,
    headers: Mapping[str, str] | None = None,
    timeout_s: float,
    secrets: Iterable[str] = (),
) -> Any:
    """GET `address` and parse the JSON answer.

    Args:
        address: the full URL (no secret in it).
        name: the provider's name for messages (``"Electricity Maps"``).
        headers: request headers (where a key goes).
        timeout_s: seconds for the connection and for each read.
        secrets: values to keep out of every message.

    Raises:
        ProviderError: unreachable, timed out, refused (401/403: ``auth``; 429:
            ``rate-limit``; 404: ``not-found``; other 4xx: ``refused``; 5xx:
            ``server-error``) or an answer that is not JSON (``garbage``).
    """
    secrets = [s for s in secrets if s]
    request = urllib.request.Request(
        address, headers={"Accept": "application/json", "User-Agent": USER_AGENT, **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            body = response.read(_MAX_BODY + 1)
    except urllib.error.HTTPError as exc:
        try:
            raise _http_error(exc, name, secrets) from None
        finally:
            exc.close()
    except TimeoutError:
        raise ProviderError(TIMEOUT, f"{name} did not answer within {timeout_s:g} s") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, (TimeoutError, socket.timeout)):
            raise ProviderError(TIMEOUT, f"{name} did not answer within {timeout_s:g} s") from None
        text = redact(str(getattr(reason, "strerror", None) or reason), secrets)
        raise ProviderError(UNREACHABLE, f"{name} is unreachable ({text})") from None
    except (OSError, http.client.HTTPException) as exc:  # a connection reset mid-answer...
        text = redact(f"{type(exc).__name__}: {exc}", secrets)
        raise ProviderError(UNREACHABLE, f"{name} broke off the connection ({text})") from None
    if len(body) > _MAX_BODY:
        raise ProviderError(GARBAGE, f"{name} sent an answer larger than {_MAX_BODY} bytes")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        start = redact(body[:60].decode("utf-8", "replace"), secrets)
        message = f"{name} answered something that is not JSON ({start!r}…)"
        raise ProviderError(GARBAGE, message) from None


def _http_error(exc: urllib.error.HTTPError, name: str, secrets: list[str]) -> ProviderError:
    status = exc.code
    try:
        detail = exc.read(300).decode("utf-8", "replace").strip()
    except OSError:
        detail = ""
    detail = redact(" ".join(detail.split()), secrets)
    said = f": {detail[:200]}" if detail else ""
    if status in (401, 403):
        return ProviderError(
            AUTH, f"{name} refused the request (HTTP {status}){said}", status=status
        )
    if status == 429:
        wait = _retry_after(exc.headers.get("Retry-After") if exc.headers else None)
        return ProviderError(
            RATE_LIMIT,
            f"{name} is limiting the rate of requests (HTTP 429)",
            retry_after_s=wait,
            status=status,
        )
    if status == 404:
        return ProviderError(
            NOT_FOUND, f"{name} found nothing there (HTTP 404){said}", status=status
        )
    if 400 <= status < 500:
        return ProviderError(
            REFUSED, f"{name} refused the request (HTTP {status}){said}", status=status
        )
    return ProviderError(SERVER, f"{name} failed (HTTP {status}){said}", status=status)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (seconds or an HTTP date), if it holds one."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, parsed.timestamp() - time.time())
