"""The one exception tree of the Kubernetes client layer.

    KubeError
    ├── ConfigError          no usable kubeconfig / in-cluster credentials
    ├── DecodeError          a response body was not the JSON we expected
    ├── TransportError       no (complete) HTTP answer
    │   ├── ConnectionLost   refused, reset, TLS failure, stream cut mid-body
    │   ├── RequestTimeout   a non-streaming request took longer than its deadline
    │   └── WatchStalled     a watch sent no bytes for the inactivity timeout
    └── ApiError             the server answered with an error status (or an in-stream ERROR event)
        ├── BadRequest (400), Unauthorized (401), Forbidden (403), NotFound (404)
        ├── Conflict (409: a stale resourceVersion, or failed delete preconditions)
        │   └── AlreadyExists (409 with reason AlreadyExists: a create of a name that is taken)
        ├── Invalid (422: the object or patch failed validation, or a JSON patch `test` failed)
        ├── Expired (410: reason Expired, or Gone from older servers)
        ├── Throttled (429)
        └── ServerError (5xx)

Foreign exceptions (aiohttp, ssl, OSError, msgspec, the `kubernetes` config loader) are translated into this tree
once, where they are raised (`client.py`, `config.py`), with `raise ... from` so the cause stays visible. Code above
those adapters catches only these classes, so the HTTP library stays replaceable and the retry rules of the
reflector read as a short list of `except` clauses.
"""

from __future__ import annotations

__all__ = [
    "AlreadyExists",
    "ApiError",
    "BadRequest",
    "ConfigError",
    "Conflict",
    "ConnectionLost",
    "DecodeError",
    "Expired",
    "Forbidden",
    "Invalid",
    "KubeError",
    "NotFound",
    "RequestTimeout",
    "ServerError",
    "Throttled",
    "TransportError",
    "Unauthorized",
    "WatchStalled",
    "api_error",
]


class KubeError(Exception):
    """Base of every error this layer raises."""


class ConfigError(KubeError):
    """The cluster configuration is missing or unusable (the message says which file or source and why)."""


class DecodeError(KubeError):
    """A body or watch line did not decode into the expected shape."""


class TransportError(KubeError):
    """The request got no complete HTTP answer; retrying later may work."""


class ConnectionLost(TransportError):
    """Connecting failed, or the connection broke (including a watch stream cut without a clean end)."""


class RequestTimeout(TransportError):
    """A list or other bounded request did not finish within its deadline."""


class WatchStalled(TransportError):
    """A watch delivered no bytes for the inactivity timeout: the connection is presumed dead."""


class ApiError(KubeError):
    """The API server answered with an error: an HTTP status, or an `ERROR` event inside a watch stream.

    `reason` and `message` come from the Status object when there is one; API Priority and Fairness answers 429
    with plain text, which becomes the message. `retry_after` is in seconds (the Retry-After header, else the
    Status's `details.retryAfterSeconds`). `causes` holds the `details.causes[].reason` values, which is how a
    "resource version too large" 504 is told apart from other timeouts.
    """

    def __init__(
        self,
        status: int,
        reason: str = "",
        message: str = "",
        *,
        retry_after: float | None = None,
        causes: tuple[str, ...] = (),
    ) -> None:
        super().__init__(f"{status} {reason}: {message}" if reason else f"{status}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.retry_after = retry_after
        self.causes = causes

    @property
    def resource_version_too_large(self) -> bool:
        """The server has not reached the resourceVersion we asked for (e.g. after an etcd restore)."""
        return "ResourceVersionTooLarge" in self.causes or "Too large resource version" in self.message


class BadRequest(ApiError):
    """400: a malformed request (selector, parameters)."""


class Unauthorized(ApiError):
    """401: the credentials were missing, expired or rejected."""


class Forbidden(ApiError):
    """403: authenticated, but RBAC does not allow this request."""


class NotFound(ApiError):
    """404: the object or the resource type (an API not served) does not exist."""


class Conflict(ApiError):
    """409: a stale resourceVersion on write, failed delete preconditions, or an object that already exists.

    The server says which in the Status message; `precondition_failed` tells a DELETE whose uid/resourceVersion
    preconditions no longer hold (the object was replaced or changed) from other conflicts.
    """

    @property
    def precondition_failed(self) -> bool:
        return "Precondition failed" in self.message


class AlreadyExists(Conflict):
    """409 with reason AlreadyExists: a create whose name is taken."""


class Invalid(ApiError):
    """422: the object (or the result of a patch) failed validation, or a JSON patch `test` operation failed."""


class Expired(ApiError):
    """410: the resourceVersion or continue token is older than the history the server keeps.

    Current servers say `reason: Expired`, older ones `Gone`; both mean the same to a client: list again.
    """


class Throttled(ApiError):
    """429: too many requests; `retry_after` says when to try again."""


class ServerError(ApiError):
    """5xx: the server failed; the request may work later."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Expired,
    422: Invalid,
    429: Throttled,
}


def api_error(
    status: int,
    reason: str = "",
    message: str = "",
    *,
    retry_after: float | None = None,
    causes: tuple[str, ...] = (),
) -> ApiError:
    """The most specific ApiError subclass for an HTTP status code."""
    cls = _BY_STATUS.get(status)
    if cls is Conflict and reason == "AlreadyExists":
        cls = AlreadyExists
    if cls is None:
        cls = ServerError if status >= 500 else ApiError
    return cls(status, reason, message, retry_after=retry_after, causes=causes)
