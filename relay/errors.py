"""One error type for everything a client may see, rendered in the caller's protocol.

OpenAI shape:    {"error": {"message", "type", "code", "param"}}
Anthropic shape: {"type": "error", "error": {"type", "message"}}
"""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.responses import JSONResponse

# Anthropic names its error types by status; OpenAI's `type` values follow its own docs.
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
}
_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_balance",
    403: "permission_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


@dataclass
class RelayError(Exception):
    status: int
    message: str
    code: str
    param: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"


def openai_body(error: RelayError) -> dict:
    kind = _OPENAI_TYPES.get(error.status, "api_error" if error.status >= 500 else "invalid_request_error")
    return {"error": {"message": error.message, "type": kind, "code": error.code, "param": error.param}}


def anthropic_body(error: RelayError) -> dict:
    kind = _ANTHROPIC_TYPES.get(error.status, "api_error" if error.status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": error.message}}


def render(error: RelayError, protocol: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = anthropic_body(error) if protocol == "anthropic" else openai_body(error)
    return JSONResponse(body, status_code=error.status, headers={**(headers or {}), **error.headers})


# Constructors for the errors the pipeline raises most, so messages stay consistent.
def bad_request(message: str, param: str | None = None, code: str = "invalid_request") -> RelayError:
    return RelayError(400, message, code, param)


def unauthorized(message: str) -> RelayError:
    return RelayError(401, message, "invalid_api_key")


def model_not_found(model: str) -> RelayError:
    return RelayError(
        404,
        f"The model '{model}' does not exist on this relay. GET /v1/models lists the models you can use.",
        "model_not_found",
        "model",
    )
