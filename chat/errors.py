"""Errors that carry their HTTP status: raised by actions and validation, rendered at the edge."""

from __future__ import annotations


class ChatError(Exception):
    """A problem the caller can fix; ``str(error)`` is the message to show them."""

    status_code = 400


class Invalid(ChatError):
    """The input is malformed: a field is missing, too long, of the wrong type."""

    status_code = 422

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class Unauthorized(ChatError):
    status_code = 401


class Forbidden(ChatError):
    status_code = 403


class NotFound(ChatError):
    status_code = 404


class Conflict(ChatError):
    """The request clashes with the current state (a duplicate, a stale change)."""

    status_code = 409


class RateLimited(ChatError):
    status_code = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after
