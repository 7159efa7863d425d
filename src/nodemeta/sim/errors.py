"""API errors as kube-apiserver renders them: a `Status` object with an HTTP code.

Every failure the simulator reports goes through `APIError`; the HTTP layer turns it into a response in one place.
Messages and `details` follow apimachinery's `api/errors` constructors so clients that parse them (kubectl,
client-go's `IsNotFound`, the Python client) see the same thing they would from a real server.
"""

from __future__ import annotations

from typing import Any

from nodemeta.sim.resources import ResourceType


class APIError(Exception):
    """An error answer: `status` is the Status body, `code` the HTTP status."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = dict(headers or {})
        self.metadata: dict[str, Any] = {}
        retry = (details or {}).get("retryAfterSeconds")
        if retry:
            self.headers.setdefault("Retry-After", str(retry))

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": dict(self.metadata),
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.code
        return body


def _details(res: ResourceType | None, name: str) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name}
    if res is not None:
        if res.group:
            out["group"] = res.group
        out["kind"] = res.plural
    return out


def not_found(res: ResourceType, name: str) -> APIError:
    return APIError(404, "NotFound", f'{res.qualified} "{name}" not found', _details(res, name))


def namespace_not_found(name: str) -> APIError:
    return APIError(404, "NotFound", f'namespaces "{name}" not found', {"name": name, "kind": "namespaces"})


def unknown_path() -> APIError:
    return APIError(404, "NotFound", "the server could not find the requested resource", {})


def already_exists(res: ResourceType, name: str) -> APIError:
    return APIError(409, "AlreadyExists", f'{res.qualified} "{name}" already exists', _details(res, name))


def generate_name_exhausted(res: ResourceType, name: str) -> APIError:
    details = _details(res, name) | {"retryAfterSeconds": 1}
    message = (
        f'{res.qualified} "{name}" already exists, the server was not able to generate a unique name for the object'
    )
    return APIError(409, "AlreadyExists", message, details)


def conflict(res: ResourceType, name: str, why: str) -> APIError:
    message = f'Operation cannot be fulfilled on {res.qualified} "{name}": {why}'
    return APIError(409, "Conflict", message, _details(res, name))


STALE = "the object has been modified; please apply your changes to the latest version and try again"


def invalid(kind: str, name: str, group: str, causes: list[tuple[str, str, str]]) -> APIError:
    """422 Invalid; `causes` are (field, reason, message) with reason like FieldValueRequired."""
    text = "; ".join(f"{field}: {msg}" for field, _reason, msg in causes)
    if len(causes) > 1:
        text = "[" + ", ".join(f"{field}: {msg}" for field, _reason, msg in causes) + "]"
    label = f"{kind}.{group}" if group else kind
    details: dict[str, Any] = {"name": name}
    if group:
        details["group"] = group
    details["kind"] = kind
    details["causes"] = [{"reason": r, "message": m, "field": f} for f, r, m in causes]
    return APIError(422, "Invalid", f'{label} "{name}" is invalid: {text}', details)


def invalid_list_options(message: str, field: str, value: str) -> APIError:
    """Validation of list/watch query parameters (kind ListOptions in group meta.k8s.io)."""
    details = {
        "group": "meta.k8s.io",
        "kind": "ListOptions",
        "causes": [{"reason": "FieldValueForbidden", "message": message, "field": field}],
    }
    return APIError(422, "Invalid", f'ListOptions.meta.k8s.io "" is invalid: {field}: {message}', details)


def bad_request(message: str) -> APIError:
    return APIError(400, "BadRequest", message)


def unauthorized() -> APIError:
    return APIError(401, "Unauthorized", "Unauthorized")


def forbidden(res: ResourceType, name: str, why: str, cause: str | None = None) -> APIError:
    head = f'{res.qualified} "{name}"' if name else res.qualified
    details: dict[str, Any] = _details(res, name) if name else {"kind": res.plural}
    if cause:
        details["causes"] = [{"reason": cause, "message": why, "field": "metadata.namespace"}]
    return APIError(403, "Forbidden", f"{head} is forbidden: {why}", details)


def method_not_allowed(verb: str, res: ResourceType) -> APIError:
    message = f'{verb} is not supported on resources of kind "{res.qualified}"'
    return APIError(405, "MethodNotAllowed", message, {"kind": res.plural})


def not_acceptable() -> APIError:
    message = "only the following media types are accepted: application/json, application/json;stream=watch"
    return APIError(406, "NotAcceptable", message)


def unsupported_media_type(content_type: str, accepted: list[str]) -> APIError:
    message = f"the body of the request was in an unknown format - accepted media types include: {', '.join(accepted)}"
    if content_type:
        message = f"{message} (got {content_type})"
    return APIError(415, "UnsupportedMediaType", message)


def request_too_large(limit: int) -> APIError:
    return APIError(413, "RequestEntityTooLarge", f"Request entity too large: limit is {limit}")


def expired(message: str) -> APIError:
    return APIError(410, "Expired", message)


def too_large_resource_version(requested: int, current: int) -> APIError:
    message = f"Timeout: Too large resource version: {requested}, current: {current}"
    details = {
        "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
        "retryAfterSeconds": 1,
    }
    return APIError(504, "Timeout", message, details)


def internal(err: str) -> APIError:
    return APIError(500, "InternalError", f"Internal error occurred: {err}", {"causes": [{"message": err}]})


def success_status(res: ResourceType, name: str, uid: str) -> dict[str, Any]:
    """The body of a delete from a store that does not return the object."""
    details: dict[str, Any] = {"name": name}
    if res.group:
        details["group"] = res.group
    details["kind"] = res.plural
    details["uid"] = uid
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}
