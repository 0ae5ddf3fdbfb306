"""The API's errors: what an HTTP call answers (a Google error envelope) and the google.rpc
codes a failed long-running operation carries."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# gRPC code numbers used in google.rpc.Status of failed operations.
CODE_ABORTED = 10
CODE_INTERNAL = 13
CODE_RESOURCE_EXHAUSTED = 8


class ApiError(Exception):
    """An error the API answers with a Google error envelope."""

    def __init__(
        self,
        http_code: int,
        status: str,
        message: str,
        details: Sequence[dict[str, Any]] = (),
    ) -> None:
        super().__init__(message)
        self.http_code = http_code
        self.status = status
        self.message = message
        self.details = list(details)

    def envelope(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "code": self.http_code,
            "message": self.message,
            "status": self.status,
        }
        if self.details:
            error["details"] = self.details
        return {"error": error}


def invalid_argument(message: str) -> ApiError:
    return ApiError(400, "INVALID_ARGUMENT", message)


def failed_precondition(message: str) -> ApiError:
    return ApiError(400, "FAILED_PRECONDITION", message)


def not_found(name: str) -> ApiError:
    return ApiError(404, "NOT_FOUND", f"Resource '{name}' was not found")


def already_exists(name: str) -> ApiError:
    return ApiError(409, "ALREADY_EXISTS", f"Resource '{name}' already exists")
