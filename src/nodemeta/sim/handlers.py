"""Resource requests: URL and query parsing, then the list, watch, get and write semantics of kube-apiserver.

Everything a request can get wrong becomes an `APIError` here or in the registry; `server.py` turns those into
Status responses in one place. Rules are written from the Kubernetes API conventions: the resourceVersion by
resourceVersionMatch by paging table for lists, the resourceVersion rules for watches, and the error texts
clients match on.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
import yaml
from aiohttp import web

from nodemeta.sim import errors
from nodemeta.sim import patch as patches
from nodemeta.sim.auth import Binding
from nodemeta.sim.errors import APIError
from nodemeta.sim.registry import DeleteOptions, Registry, rfc3339
from nodemeta.sim.resources import ResourceType, lookup
from nodemeta.sim.selectors import FieldSelector, LabelSelector, SelectorError
from nodemeta.sim.store import Expired, Page, Stored, encode_continue
from nodemeta.sim.views import FULL, JSON_TYPE, View, error_line, negotiate
from nodemeta.sim.watch import WatchFilter, WatchOptions, WatchStream

if TYPE_CHECKING:
    from nodemeta.sim.server import SimServer

_NAMESPACE_SUBRESOURCES = {"status", "finalize"}
_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}
_PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
}
_BODY_TYPES = ("application/json", "application/yaml")
_EXPIRED_CONTINUE = (
    "The provided continue parameter is too old to display a consistent list result. You can start a new list "
    "without the continue parameter, or use the continue token in this response to retrieve the remainder of the "
    "results. Continuing with the provided token results in an inconsistent list - objects that were created, "
    "modified, or deleted between the time the first chunk was returned and now may show up in the list."
)


@dataclass(frozen=True, slots=True)
class Target:
    res: ResourceType
    namespace: str
    name: str
    subresource: str
    watch_path: bool


def parse_target(path: str) -> Target:
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        raise errors.unknown_path()
    watch_path = bool(rest) and rest[0] == "watch"
    if watch_path:
        rest = rest[1:]
    namespace = ""
    if len(rest) >= 3 and rest[0] == "namespaces" and not (len(rest) == 3 and rest[2] in _NAMESPACE_SUBRESOURCES):
        namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3:
        raise errors.unknown_path()
    res = lookup(group, version, rest[0])
    if res is None or (namespace and not res.namespaced):
        raise errors.unknown_path()
    name = rest[1] if len(rest) > 1 else ""
    sub = rest[2] if len(rest) > 2 else ""
    if sub and sub not in res.subresources:
        raise errors.unknown_path()
    return Target(res, namespace, name, sub, watch_path)


class Query:
    """Typed access to query parameters with the API server's parsing rules and error texts."""

    def __init__(self, params: Mapping[str, str]) -> None:
        self.params = params

    def text(self, key: str) -> str | None:
        return self.params.get(key)

    def flag(self, key: str) -> bool:
        value = self.params.get(key)
        if value is None or value == "":
            return False
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise errors.bad_request(f'strconv.ParseBool: parsing "{value}": invalid syntax')

    def integer(self, key: str) -> int | None:
        value = self.params.get(key)
        if value is None or value == "":
            return None
        try:
            return int(value)
        except ValueError:
            raise errors.bad_request(f'strconv.ParseInt: parsing "{value}": invalid syntax') from None

    def labels(self) -> LabelSelector | None:
        text = self.params.get("labelSelector")
        if not text:
            return None
        try:
            return LabelSelector.parse(text)
        except SelectorError as err:
            raise errors.bad_request(str(err)) from None

    def fields(self, res: ResourceType) -> FieldSelector | None:
        text = self.params.get("fieldSelector")
        if not text:
            return None
        try:
            return FieldSelector.parse(text).check_supported(res.selectable_fields, res.field_aliases)
        except SelectorError as err:
            raise errors.bad_request(str(err)) from None

    def field_validation(self) -> str:
        value = self.params.get("fieldValidation") or "Warn"
        if value not in ("Ignore", "Warn", "Strict"):
            raise errors.bad_request(
                f'fieldValidation: Unsupported value: "{value}": supported values: "Ignore", "Warn", "Strict"'
            )
        return value

    def dry_run(self) -> bool:
        value = self.params.get("dryRun")
        if not value:
            return False
        if value != "All":
            raise errors.bad_request(f'dryRun: Unsupported value: "{value}": supported values: "All"')
        return True


def parse_rv(value: str) -> int:
    try:
        rv = int(value)
    except ValueError:
        raise errors.bad_request(f'invalid resource version "{value}"') from None
    if rv < 0:
        raise errors.bad_request(f'invalid resource version "{value}"')
    return rv


def _forbidden_option(field: str, message: str) -> APIError:
    return errors.invalid_list_options(f"Forbidden: {message}", field, "")


class ResourceHandler:
    """Serves every request under /api and /apis for one SimServer."""

    def __init__(self, server: SimServer) -> None:
        self.server = server
        self.registry: Registry = server.registry
        self.settings = server.settings

    # -- entry point ----------------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        target = parse_target(request.path)
        query = Query(request.query)
        method = request.method
        res = target.res
        if method == "GET":
            if query.flag("watch") or target.watch_path:
                self._require(res, "watch")
                return await self.watch(request, target, query)
            if target.name:
                self._require(res, "get")
                if target.subresource == "scale":
                    return _json(self.registry.scale(res, target.namespace, target.name))
                return self.get(request, target)
            self._require(res, "list")
            return await self.list(request, target, query)
        if target.watch_path:
            raise errors.unknown_path()
        if method == "POST":
            if target.subresource == "binding":
                return await self.bind(request, target)
            if target.subresource == "token":
                return await self.token_request(request, target)
            if target.name or (res.namespaced and not target.namespace):
                raise errors.method_not_allowed("create", res)
            self._require(res, "create")
            return await self.create(request, target, query)
        if not target.name:
            if method == "DELETE":
                self._require(res, "deletecollection")
                return await self.delete_collection(request, target, query)
            raise errors.method_not_allowed(method.lower(), res)
        if target.subresource == "scale" and method in ("PUT", "PATCH"):
            return await self.write_scale(request, target)
        if method == "PUT":
            self._require(res, "update")
            return await self.update(request, target, query)
        if method == "PATCH":
            self._require(res, "patch")
            return await self.patch(request, target, query)
        if method == "DELETE":
            self._require(res, "delete")
            return await self.delete(request, target, query)
        raise errors.method_not_allowed(method.lower(), res)

    def _require(self, res: ResourceType, verb: str) -> None:
        if verb not in res.verbs:
            raise errors.method_not_allowed(verb, res)

    # -- bodies ---------------------------------------------------------------------------------------------

    async def _body(self, request: web.Request, accepted: tuple[str, ...] = _BODY_TYPES) -> tuple[Any, str]:
        ctype = request.headers.get("Content-Type", "application/json").split(";")[0].strip().lower()
        if ctype not in accepted:
            raise errors.unsupported_media_type(ctype, list(accepted))
        raw = await self._read_limited(request)
        try:
            if ctype.endswith("yaml"):
                return yaml.safe_load(raw), ctype
            return orjson.loads(raw), ctype
        except (orjson.JSONDecodeError, yaml.YAMLError) as err:
            detail = str(err).split("\n")[0]
            raise errors.bad_request(f"couldn't get version/kind; json parse error: {detail}") from None

    async def _read_limited(self, request: web.Request) -> bytes:
        """The whole body, or 413 as soon as it passes the limit (without buffering the rest)."""
        limit = self.settings.max_body_bytes
        chunks: list[bytes] = []
        size = 0
        while chunk := await request.content.read(64 * 1024):
            size += len(chunk)
            if size > limit:
                raise errors.request_too_large(limit)
            chunks.append(chunk)
        return b"".join(chunks)

    def _respond(
        self,
        request: web.Request,
        target: Target,
        stored: Stored,
        status: int = 200,
        warnings: tuple[str, ...] = (),
    ) -> web.Response:
        negotiated = negotiate(request.headers.get("Accept", ""), is_list=False)
        view = View(target.res, negotiated.form, self.registry.clock)
        response = web.Response(
            status=status, body=view.object(stored), headers={"Content-Type": negotiated.content_type}
        )
        for warning in warnings:
            response.headers.add("Warning", warning)
        return response

    # -- reads ----------------------------------------------------------------------------------------------

    def get(self, request: web.Request, target: Target) -> web.Response:
        stored = self.registry.get(target.res, target.namespace, target.name)
        return self._respond(request, target, stored)

    async def list(self, request: web.Request, target: Target, query: Query) -> web.Response:
        res = target.res
        negotiated = negotiate(request.headers.get("Accept", ""), is_list=True)
        labels = query.labels()
        fields = query.fields(res)
        if query.flag("sendInitialEvents"):
            raise _forbidden_option("sendInitialEvents", "sendInitialEvents is forbidden for list")
        limit = query.integer("limit") or 0
        token = query.text("continue") or ""
        rv_text = query.text("resourceVersion")
        match = query.text("resourceVersionMatch") or ""
        store = self.registry.store
        bucket = self.registry.bucket(res)
        start = ""
        if match and match not in ("Exact", "NotOlderThan"):
            raise errors.invalid_list_options(
                f'Unsupported value: "{match}": supported values: "Exact", "NotOlderThan", ""',
                "resourceVersionMatch", match,
            )  # fmt: skip
        if token:
            if match:
                raise _forbidden_option(
                    "resourceVersionMatch", "resourceVersionMatch is forbidden when continue is provided"
                )
            if rv_text not in (None, "", "0"):
                raise errors.bad_request("specifying resource version is not allowed when using continue")
            try:
                rv, start = self._decode_token(token)
            except ValueError as err:
                raise errors.bad_request(f"invalid continue token: {err}") from None
            if rv < 0:
                rv = store.rv
        elif match:
            if not rv_text:
                raise _forbidden_option(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden unless resourceVersion is provided",
                )
            wanted = parse_rv(rv_text)
            if match == "Exact":
                if wanted == 0:
                    raise _forbidden_option(
                        "resourceVersionMatch",
                        'resourceVersionMatch "exact" is forbidden for resourceVersion "0"',
                    )
                await self._wait_for_rv(wanted)
                rv = wanted
            else:
                if wanted:
                    await self._wait_for_rv(wanted)
                rv = store.rv
        elif rv_text in (None, ""):
            rv = store.rv
        elif rv_text == "0":
            rv, limit = store.rv, 0  # served whole from the watch cache, as kube-apiserver 1.32 does
        else:
            wanted = parse_rv(rv_text)
            await self._wait_for_rv(wanted)
            rv = wanted if limit else store.rv
        flt = WatchFilter(namespace=target.namespace, labels=labels, fields=fields)
        accept = flt.matches if (labels or fields) else None
        prefix = f"{target.namespace}/" if target.namespace else ""
        try:
            # `spec.nodeName=X` reads X's pods through the store's index; the whole selector still decides.
            page = store.page(
                bucket, rv=rv, start=start, prefix=prefix, limit=max(limit, 0), accept=accept,
                count_remaining=accept is None, index_value=flt.index_value(bucket),
            )  # fmt: skip
        except Expired:
            if token:
                raise self._expired_continue(start) from None
            raise errors.expired(f"too old resource version: {rv} ({bucket.floor})") from None
        view = View(res, negotiated.form, self.registry.clock)
        return web.Response(body=view.list_body(page), headers={"Content-Type": negotiated.content_type})

    def _decode_token(self, token: str) -> tuple[int, str]:
        from nodemeta.sim.store import decode_continue

        return decode_continue(token)

    def _expired_continue(self, start: str) -> APIError:
        err = errors.expired(_EXPIRED_CONTINUE)
        err.metadata = {"continue": encode_continue(-1, start)}
        return err

    async def _wait_for_rv(self, wanted: int) -> None:
        """A resourceVersion ahead of the store: wait briefly for it, then 504 like the watch cache."""
        store = self.registry.store
        if wanted <= store.rv:
            return
        reached = asyncio.Event()

        def observe(_bucket: object, _change: object) -> None:
            if store.rv >= wanted:
                reached.set()

        store.observers.append(observe)
        try:
            async with asyncio.timeout(self.settings.future_rv_wait):
                await reached.wait()
        except TimeoutError:
            raise errors.too_large_resource_version(wanted, store.rv) from None
        finally:
            store.observers.remove(observe)

    # -- watch ----------------------------------------------------------------------------------------------

    async def watch(self, request: web.Request, target: Target, query: Query) -> web.StreamResponse:
        res = target.res
        if self.server.stopping:
            raise errors.APIError(503, "ServiceUnavailable", "apiserver is shutting down")
        # Watch events carry single objects, also on a collection watch.
        negotiated = negotiate(request.headers.get("Accept", ""), is_list=False)
        labels = query.labels()
        fields = query.fields(res)
        name = target.name
        if fields is not None:
            named = fields.equality_value("metadata.name")
            if name and named is not None and named != name:
                raise errors.bad_request("fieldSelector metadata.name doesn't match requested name")
        rv_text = query.text("resourceVersion") or ""
        match = query.text("resourceVersionMatch") or ""
        initial = query.flag("sendInitialEvents")
        if query.text("continue") and match:
            raise _forbidden_option(
                "resourceVersionMatch", "resourceVersionMatch is forbidden when continue is provided"
            )
        if initial:
            if match != "NotOlderThan":
                raise _forbidden_option(
                    "resourceVersionMatch",
                    "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
                )
            if not self.settings.watch_list:
                raise _forbidden_option(
                    "sendInitialEvents",
                    "sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled",
                )
        elif match:
            raise _forbidden_option(
                "resourceVersionMatch",
                "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
            )
        timeout = query.integer("timeoutSeconds")
        if timeout is None or timeout <= 0:
            base = self.settings.min_request_timeout
            seconds = base * (1 + random.random())
        else:
            seconds = float(timeout)
        bookmarks = query.flag("allowWatchBookmarks")
        options = WatchOptions(
            bookmarks=bookmarks, timeout=seconds, bookmark_interval=self.settings.bookmark_interval,
            queue_limit=self.settings.watch_queue_limit, initial_events_end=initial,
        )  # fmt: skip
        view = View(res, negotiated.form, self.registry.clock)
        store = self.registry.store
        bucket = self.registry.bucket(res)
        flt = WatchFilter(namespace=target.namespace, name=name, labels=labels, fields=fields)
        stream = WatchStream(bucket, view, flt, options, lambda: store.rv)
        too_old: Expired | None = None
        if initial and rv_text not in ("", "0"):
            await self._wait_for_rv(parse_rv(rv_text))
        # From here to the subscription nothing awaits: the snapshot and the live stream meet without a gap.
        if initial or rv_text in ("", "0"):
            prefix = f"{target.namespace}/" if target.namespace else ""
            state = bucket.scan(store.rv, store.rv, prefix=prefix, index_value=flt.index_value(bucket))
            stream.start_from_state(list(state), store.rv)
        else:
            try:
                stream.start_from_history(bucket.changes_since(parse_rv(rv_text)))
            except Expired as err:
                too_old = err
        response = web.StreamResponse(
            status=200,
            headers={"Content-Type": JSON_TYPE if negotiated.form == FULL else negotiated.content_type},
        )
        response.enable_chunked_encoding()
        if too_old is not None:
            await response.prepare(request)
            await response.write(error_line(errors.expired(str(too_old)).status()))
            await response.write_eof()
            return response
        self.server.open_watches.add(stream)
        try:
            await response.prepare(request)
            await stream.run(response.write)
            if stream.aborted:
                if request.transport is not None:
                    request.transport.abort()
                return response
            await response.write_eof()
        except (ConnectionResetError, ConnectionError):
            pass
        finally:
            stream.close()
            self.server.open_watches.discard(stream)
        return response

    # -- writes ---------------------------------------------------------------------------------------------

    async def create(self, request: web.Request, target: Target, query: Query) -> web.Response:
        body, _ = await self._body(request)
        if target.res.virtual:
            return await self._token_review(body)
        result = self.registry.create(
            target.res,
            target.namespace,
            body,
            field_validation=query.field_validation(),
            dry_run=query.dry_run(),
        )
        return self._respond(request, target, result.stored, 201, result.warnings)

    async def _token_review(self, body: Any) -> web.Response:
        if not isinstance(body, dict) or not (body.get("spec") or {}).get("token"):
            raise errors.bad_request("token is required for TokenReview in authentication")
        review = self.server.authenticator.review(body, self.registry.uid_of)
        return web.Response(status=201, body=orjson.dumps(review), headers={"Content-Type": JSON_TYPE})

    async def update(self, request: web.Request, target: Target, query: Query) -> web.Response:
        body, _ = await self._body(request)
        if target.subresource == "finalize":
            stored = self.registry.finalize_namespace(target.name, body)
            return self._respond(request, target, stored)
        result = self.registry.update(
            target.res, target.namespace, target.name, body, subresource=target.subresource,
            field_validation=query.field_validation(), dry_run=query.dry_run(),
        )  # fmt: skip
        return self._respond(request, target, result.stored, 200, result.warnings)

    async def patch(self, request: web.Request, target: Target, query: Query) -> web.Response:
        ctype = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        kind = _PATCH_TYPES.get(ctype)
        if kind is None:
            raise errors.unsupported_media_type(ctype, list(_PATCH_TYPES))
        body, _ = await self._body(request, (ctype,))
        if kind == "apply":
            result = self.registry.apply(
                target.res, target.namespace, target.name, body,
                field_manager=query.text("fieldManager") or "", dry_run=query.dry_run(),
            )  # fmt: skip
            return self._respond(request, target, result.stored, 201 if result.created else 200, result.warnings)
        result = self.registry.patch(
            target.res, target.namespace, target.name, kind, body, subresource=target.subresource,
            field_validation=query.field_validation(), dry_run=query.dry_run(),
        )  # fmt: skip
        return self._respond(request, target, result.stored, 200, result.warnings)

    async def _delete_options(self, request: web.Request, query: Query) -> DeleteOptions:
        body: Any = None
        if request.can_read_body:
            raw = await self._read_limited(request)
            if raw.strip():
                try:
                    body = orjson.loads(raw)
                except orjson.JSONDecodeError as err:
                    raise errors.bad_request(f"couldn't get version/kind; json parse error: {err}") from None
        body = body if isinstance(body, dict) else {}
        grace = body.get("gracePeriodSeconds", query.integer("gracePeriodSeconds"))
        propagation = body.get("propagationPolicy") or query.text("propagationPolicy")
        orphan = body.get("orphanDependents")
        if orphan is None and query.text("orphanDependents"):
            orphan = query.flag("orphanDependents")
        if propagation is None and orphan is not None:
            propagation = "Orphan" if orphan else "Background"
        if propagation not in (None, "Orphan", "Background", "Foreground"):
            raise errors.invalid(
                "DeleteOptions", "", "",
                [("propagationPolicy", "FieldValueNotSupported",
                  f'Unsupported value: "{propagation}": supported values: '
                  '"Foreground", "Background", "Orphan", "nil"')],
            )  # fmt: skip
        pre = body.get("preconditions") or {}
        dry = body.get("dryRun") == ["All"] or query.dry_run()
        return DeleteOptions(
            grace_period=int(grace) if grace is not None else None, propagation=propagation,
            uid=pre.get("uid"), resource_version=pre.get("resourceVersion"), dry_run=dry,
        )  # fmt: skip

    async def delete(self, request: web.Request, target: Target, query: Query) -> web.Response:
        options = await self._delete_options(request, query)
        result = self.registry.delete(target.res, target.namespace, target.name, options)
        if result.deleted and not target.res.delete_returns_object:
            body = errors.success_status(target.res, target.name, result.stored.uid)
            response = web.Response(body=orjson.dumps(body), headers={"Content-Type": JSON_TYPE})
        else:
            response = self._respond(request, target, result.stored)
        for warning in result.warnings:
            response.headers.add("Warning", warning)
        return response

    async def delete_collection(self, request: web.Request, target: Target, query: Query) -> web.Response:
        options = await self._delete_options(request, query)
        flt = WatchFilter(namespace=target.namespace, labels=query.labels(), fields=query.fields(target.res))
        victims = [s for s in self.registry.iter_objects(target.res, target.namespace) if flt.matches(s)]
        results = []
        for stored in victims:
            try:
                results.append(self.registry.delete(target.res, stored.namespace, stored.name, options).stored)
            except APIError as err:
                if err.code != 404:
                    raise
        page = Page(results, self.registry.store.rv, "", None)
        return web.Response(body=View(target.res, FULL).list_body(page), headers={"Content-Type": JSON_TYPE})

    # -- subresources ---------------------------------------------------------------------------------------

    async def write_scale(self, request: web.Request, target: Target) -> web.Response:
        """PUT or PATCH of workloads' `scale`: the patch applies to the Scale object, then replicas are written."""
        res, ns, name = target.res, target.namespace, target.name
        if request.method == "PUT":
            body, _ = await self._body(request)
            return _json(self.registry.set_scale(res, ns, name, body))
        ctype = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        kind = _PATCH_TYPES.get(ctype)
        if kind is None or kind == "apply":
            raise errors.unsupported_media_type(ctype, [t for t, k in _PATCH_TYPES.items() if k != "apply"])
        body, _ = await self._body(request, (ctype,))
        current = self.registry.scale(res, ns, name)
        try:
            if kind == "json":
                patched = patches.json_patch(current, body)
            elif kind == "merge":
                patched = patches.merge_patch(current, body)
            else:
                patched = patches.strategic_merge_patch(current, body, "Scale")
        except patches.PatchError as err:
            raise (errors.invalid("Scale", name, "autoscaling", [("", "FieldValueInvalid", str(err))])
                   if err.invalid else errors.bad_request(str(err))) from err  # fmt: skip
        return _json(self.registry.set_scale(res, ns, name, patched))

    async def bind(self, request: web.Request, target: Target) -> web.Response:
        body, _ = await self._body(request)
        self.registry.bind(target.res, target.namespace, target.name, body)
        status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}
        return web.Response(status=201, body=orjson.dumps(status), headers={"Content-Type": JSON_TYPE})

    async def token_request(self, request: web.Request, target: Target) -> web.Response:
        """TokenRequest: a bound service-account token, optionally bound to a pod (and so to its node)."""
        body, _ = await self._body(request)
        spec = (body or {}).get("spec") or {} if isinstance(body, dict) else {}
        sa = self.registry.get(target.res, target.namespace, target.name)
        binding = Binding(target.namespace, target.name, sa.uid)
        ref = spec.get("boundObjectRef") or {}
        if ref.get("kind") == "Pod":
            pod = self.registry.find("pods", target.namespace, ref.get("name", ""))
            if pod is None or (ref.get("uid") and ref["uid"] != pod.uid):
                raise errors.not_found(lookup("", "v1", "pods"), ref.get("name", ""))  # type: ignore[arg-type]
            node_name = (pod.fields or {}).get("spec.nodeName", "")
            node_uid = self.registry.uid_of("nodes", "", node_name) or "" if node_name else ""
            binding = Binding(
                target.namespace,
                target.name,
                sa.uid,
                pod.name,
                pod.uid,
                node_name if node_uid else "",
                node_uid,
            )
        seconds = int(spec.get("expirationSeconds") or 3600)
        auth = self.server.authenticator
        token = auth.issue(binding, spec.get("audiences") or None, seconds)
        answer = {
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": target.name, "namespace": target.namespace, "creationTimestamp": None},
            "spec": {**spec, "expirationSeconds": seconds},
            "status": {"token": token, "expirationTimestamp": rfc3339(auth.expiry(token))},
        }
        return web.Response(status=201, body=orjson.dumps(answer), headers={"Content-Type": JSON_TYPE})


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), headers={"Content-Type": JSON_TYPE})
