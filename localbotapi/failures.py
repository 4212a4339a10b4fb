"""Failures tests inject: the next calls of a method answered with an HTTP error instead of being run."""

from __future__ import annotations

from dataclasses import dataclass

from localbotapi.protocol import ApiError

STATUS_TEXT = {
    400: "Bad Request", 403: "Forbidden", 409: "Conflict", 429: "Too Many Requests",
    500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
}


@dataclass
class _Failure:
    status: int
    retry_after: int | None
    remaining: int  # calls still to fail


class InjectedFailures:
    def __init__(self) -> None:
        self._failures: dict[str, _Failure] = {}

    def add(self, method: str, status: int, retry_after: int | None, count: int) -> None:
        self._failures[method.lower()] = _Failure(status, retry_after, count)

    def raise_if_due(self, method: str) -> None:
        """Raise the error planned for this call of `method`, if any."""
        failure = self._failures.get(method.lower())
        if failure is None:
            return
        failure.remaining -= 1
        if failure.remaining <= 0:
            del self._failures[method.lower()]
        reason = STATUS_TEXT.get(failure.status, "Error")
        if failure.retry_after is not None:
            raise ApiError(failure.status, f"{reason}: retry after {failure.retry_after}", failure.retry_after)
        raise ApiError(failure.status, reason)
