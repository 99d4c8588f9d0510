"""One exception hierarchy carrying the SPEC's error `code` and HTTP `status`."""
from __future__ import annotations

from typing import Any, Mapping


class ApiError(Exception):
    """An error that becomes the SPEC section 3 envelope (or an `error` frame)."""

    status = 400
    code = "VALIDATION_ERROR"
    default_message = "Bad request"

    def __init__(
        self,
        message: str | None = None,
        *,
        errors: Mapping[str, Any] | None = None,
        details: Mapping[str, Any] | None = None,
        code: str | None = None,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)
        self.errors = dict(errors or {})
        self.details = dict(details or {})
        if code:
            self.code = code
        if status:
            self.status = status
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """Return the envelope of SPEC section 3."""
        return {
            "success": False,
            "message": self.message,
            "error": self.message,
            "code": self.code,
            "errors": self.errors,
            "details": self.details,
        }


class ValidationError(ApiError):
    status, code, default_message = 400, "VALIDATION_ERROR", "Validation error"


class MissingTenantId(ApiError):
    status, code, default_message = 400, "MISSING_TENANT_ID", "Tenant ID is required"

    def __init__(self) -> None:
        super().__init__(errors={"tenantId": "required"})


class MissingSessionId(ValidationError):
    default_message = "sessionId is required"

    def __init__(self) -> None:
        super().__init__(errors={"sessionId": "required"})


class Unauthorized(ApiError):
    status, code, default_message = 401, "UNAUTHORIZED", "Access token required"


class InvalidApiKey(ApiError):
    status, code, default_message = 401, "INVALID_API_KEY", "Invalid API key"


class InvalidToken(ApiError):
    status, code, default_message = 401, "INVALID_JWT_TOKEN", "Invalid or expired token"


class Forbidden(ApiError):
    status, code, default_message = 403, "FORBIDDEN", "Not allowed"


class NotFound(ApiError):
    status, code, default_message = 404, "NOT_FOUND", "Not found"


class SessionNotFound(NotFound):
    code, default_message = "SESSION_NOT_FOUND", "Session not found"


class MethodNotAllowed(ApiError):
    status, code, default_message = 405, "METHOD_NOT_ALLOWED", "Method not allowed"


class Conflict(ApiError):
    status, code, default_message = 409, "CONFLICT", "Conflict"


class PayloadTooLarge(ApiError):
    status, code, default_message = 413, "PAYLOAD_TOO_LARGE", "Request body too large"


class RequestTimeout(ApiError):
    status, code, default_message = 408, "VALIDATION_ERROR", "Request headers not received in time"


class HeadersTooLarge(ApiError):
    status, code, default_message = 431, "PAYLOAD_TOO_LARGE", "Request headers too large"


class UnsupportedMediaType(ApiError):
    status, code, default_message = 415, "UNSUPPORTED_MEDIA_TYPE", "Unsupported media type"


class RateLimited(ApiError):
    status, code, default_message = 429, "RATE_LIMIT_EXCEEDED", "Too many requests, please try again later."


class ServiceUnavailable(ApiError):
    status, code, default_message = 503, "SERVICE_UNAVAILABLE", "Service unavailable"


class InternalError(ApiError):
    status, code, default_message = 500, "INTERNAL_ERROR", "Internal server error"


class RecordNotFound(Exception):
    """A store lookup found no row (the view decides which ApiError it becomes)."""
