"""Which API failures are worth retrying, decided in one place.

Transient: 429, 500, 502, 503, 504. Never retried: 400, 403, 404, 409, quota exhaustion
(RESOURCE_EXHAUSTED is capacity: retrying it blindly burns time), and a refused connection
(an endpoint that is down should fail in a second, with a hint, not after a minute).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from google.api_core import exceptions as gexc
from tenacity import (
    retry,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
    wait_random,
)

T = TypeVar("T")

TRANSIENT_API_ERRORS: tuple[type[BaseException], ...] = (
    gexc.TooManyRequests,
    gexc.InternalServerError,
    gexc.BadGateway,
    gexc.ServiceUnavailable,
    gexc.GatewayTimeout,
)


_CAPACITY_WORDS = ("quota", "capacity", "stockout", "resource_exhausted", "resources available")


def is_capacity_error(exc: BaseException) -> bool:
    """Stockouts and exhausted quota. Over REST both arrive as HTTP 429, like rate limits,
    so the status and message decide; they are never retried blindly."""
    if getattr(exc, "reason", None) == "RATE_LIMIT_EXCEEDED":
        return False  # GCP's rate limit says "Quota exceeded ..." too: the reason decides
    if isinstance(exc, gexc.ResourceExhausted):
        return True
    if isinstance(exc, gexc.TooManyRequests):
        text = f"{getattr(exc, 'message', '')} {exc}".lower()
        return any(w in text for w in _CAPACITY_WORDS)
    return False


def is_transient_api_error(exc: BaseException) -> bool:
    return isinstance(exc, TRANSIENT_API_ERRORS) and not is_capacity_error(exc)


def api_retry(fn: Callable[..., T], *, attempts: int = 5, max_seconds: float = 60.0
              ) -> Callable[..., T]:
    """Wrap one API call with bounded, jittered retries for transient failures only."""
    wrapped: Callable[..., Any] = retry(
        retry=retry_if_exception(is_transient_api_error),
        stop=stop_after_attempt(attempts) | stop_after_delay(max_seconds),
        wait=wait_exponential(multiplier=0.5, max=8.0) + wait_random(0, 0.5),
        reraise=True,
    )(fn)
    return wrapped
