"""The project's error hierarchy.

``SenderError`` is the base; its default message is its docstring. ``ProblemError`` carries an
HTTP status and a stable machine ``code`` and is rendered as problem+json by the API.
"""

from __future__ import annotations

from typing import Any


class SenderError(Exception):
    """campaign-sender failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class SettingsError(SenderError):
    """invalid settings."""


class MigrationError(SenderError):
    """a database migration failed."""


class ServicesError(SenderError):
    """the embedded services could not be started or stopped."""


class DatabaseError(SenderError):
    """the database refused an operation."""


class ProblemError(SenderError):
    """A client-visible error with an HTTP status, a stable code and extra members."""

    status: int = 400
    code: str = "bad_request"
    title: str = "Bad Request"

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        status: int | None = None,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        if title is not None:
            self.title = title
        self.headers = headers or {}
        self.extra = extra


class ValidationProblem(ProblemError):
    status = 422
    code = "validation_error"
    title = "Unprocessable Content"


class NotFound(ProblemError):
    status = 404
    code = "not_found"
    title = "Not Found"


class Conflict(ProblemError):
    status = 409
    code = "conflict"
    title = "Conflict"


class Unauthorized(ProblemError):
    status = 401
    code = "unauthorized"
    title = "Unauthorized"


class Forbidden(ProblemError):
    status = 403
    code = "forbidden"
    title = "Forbidden"


class PaymentRequired(ProblemError):
    status = 402
    code = "insufficient_credits"
    title = "Payment Required"


class TooManyRequests(ProblemError):
    status = 429
    code = "rate_limited"
    title = "Too Many Requests"
