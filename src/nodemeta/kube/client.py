"""The HTTP adapter: LIST pages, WATCH streams and single requests (reads and writes) over one aiohttp session.

This is the only module that touches aiohttp. Every aiohttp, ssl and OS error is translated here, once, into the
`errors` tree (`raise ... from`); error statuses become `ApiError` subclasses built from the Status body, or from the
plain text that API Priority and Fairness sends with its 429s.

Watch streams are split into lines here, over `iter_any()`-style reads, rather than with aiohttp's `readline()`:
that one fails on lines longer than its buffer (64 KiB by default), and a single object can be larger.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from types import TracebackType
from typing import TypeVar

import aiohttp
import structlog

from nodemeta.kube.codec import decode_status, status_error
from nodemeta.kube.config import ClusterConfig
from nodemeta.kube.errors import ApiError, ConnectionLost, RequestTimeout, WatchStalled, api_error
from nodemeta.kube.resources import JSON
from nodemeta.kube.settings import ClientSettings

__all__ = ["ApiClient"]

log = structlog.get_logger("nodemeta.kube.client")

P = TypeVar("P")
# Everything aiohttp and the OS raise when a connection cannot be made or breaks (ssl.SSLError is an OSError).
# Careful with order where a deadline of ours is also caught: TimeoutError is an OSError too.
_NETWORK_ERRORS = (aiohttp.ClientError, OSError)


class ApiClient:
    """One API server connection pool. Use as `async with ApiClient(config) as client:`."""

    def __init__(self, config: ClusterConfig, *, settings: ClientSettings | None = None) -> None:
        self.config = config
        self.settings = settings or ClientSettings()
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ApiClient:
        self._open()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            ssl_param: ssl.SSLContext | bool = self.config.ssl_context if self.config.ssl_context is not None else True
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=ssl_param),
                # No total or read timeout: watches stream for minutes. Lists get their own deadline below and
                # watches an inactivity watchdog, which aiohttp's per-session timeouts cannot express.
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.settings.connect_timeout, sock_read=None),
                headers={"User-Agent": self.settings.user_agent},
            )
        return self._session

    @property
    def closed(self) -> bool:
        return self._session is None or self._session.closed

    async def close(self) -> None:
        """Close every connection, including open watches. Safe to call twice."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    # -- requests -------------------------------------------------------------------------------------------------

    async def _headers(self, accept: str) -> dict[str, str]:
        headers = {"Accept": accept}
        authorization = await self.config.authorization()
        if authorization:
            headers["Authorization"] = authorization
        return headers

    def _url(self, path: str) -> str:
        return self.config.server + path

    async def list_page(
        self, path: str, params: Mapping[str, str], decode: Callable[[bytes], P], *, accept: str = JSON
    ) -> P:
        """GET one page of a collection and decode it with `decode` (which raises DecodeError on bad bodies)."""
        return decode(await self.send("GET", path, params=params, accept=accept))

    async def send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: bytes | None = None,
        content_type: str = JSON,
        accept: str = JSON,
    ) -> bytes:
        """One bounded request (GET, POST, PATCH, PUT, DELETE); the body of a 2xx answer, else an ApiError."""
        session = self._open()
        headers = await self._headers(accept)
        if body is not None:
            headers["Content-Type"] = content_type
        try:
            async with asyncio.timeout(self.settings.request_timeout):
                async with session.request(
                    method,
                    self._url(path),
                    params=params,
                    data=body,
                    headers=headers,
                    server_hostname=self.config.tls_server_name,
                ) as response:
                    answer = await response.read()
                    status = response.status
                    retry_after = response.headers.get("Retry-After")
        except aiohttp.ClientError as err:  # first: aiohttp's connect timeout is also a TimeoutError
            raise ConnectionLost(f"{method} {path}: {_describe(err)}") from err
        except TimeoutError as err:  # before OSError, of which TimeoutError is a subclass
            raise RequestTimeout(f"{method} {path} took longer than {self.settings.request_timeout} s") from err
        except OSError as err:
            raise ConnectionLost(f"{method} {path}: {_describe(err)}") from err
        if not 200 <= status < 300:
            raise self._error(status, answer, retry_after)
        return answer

    @contextlib.asynccontextmanager
    async def watch(
        self, path: str, params: Mapping[str, str], *, accept: str = JSON, inactivity_timeout: float
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        """Open a watch; yields an iterator over its event lines (without the newline).

        The iterator ends when the server ends the stream cleanly. It raises WatchStalled when no bytes arrive for
        `inactivity_timeout` seconds (also while waiting for the response headers), ConnectionLost when the stream
        breaks, and ApiError when the request is refused. Leaving the `async with` closes the connection.
        """
        session = self._open()
        headers = await self._headers(accept)
        url = self._url(path)
        try:
            async with asyncio.timeout(inactivity_timeout):
                response = await session.get(
                    url, params=params, headers=headers, server_hostname=self.config.tls_server_name
                )
        except aiohttp.ClientError as err:
            raise ConnectionLost(f"watch {path}: {_describe(err)}") from err
        except TimeoutError as err:
            raise WatchStalled(f"watch {path}: no response headers within {inactivity_timeout} s") from err
        except OSError as err:
            raise ConnectionLost(f"watch {path}: {_describe(err)}") from err
        try:
            if response.status != 200:
                try:
                    body = await response.read()
                except _NETWORK_ERRORS as err:
                    raise ConnectionLost(f"watch {path}: {_describe(err)}") from err
                raise self._error(response.status, body, response.headers.get("Retry-After"))
            lines = _lines(response.content, path, inactivity_timeout)
            try:
                yield lines
            finally:
                # Finish the generator here rather than leave it to the garbage collector's finalizer task.
                await lines.aclose()
        finally:
            # close(), not release(): an unfinished watch body cannot be drained, the connection must go.
            response.close()

    def _error(self, status: int, body: bytes, retry_after_header: str | None) -> ApiError:
        if status == 401:
            self.config.credentials_rejected()
        retry_after = _retry_after(retry_after_header)
        found = decode_status(body)
        if found is not None:
            return status_error(found, http_status=status, retry_after=retry_after)
        # Not a Status: APF's plain-text 429, or a proxy's error page. Its text is the message.
        text = body.decode("utf-8", "replace").strip()[:500]
        return api_error(status, "", text, retry_after=retry_after)


async def _lines(content: aiohttp.StreamReader, path: str, inactivity_timeout: float) -> AsyncGenerator[bytes, None]:
    """Split a chunked body into lines, with a per-read inactivity deadline.

    A line spanning several chunks is gathered in a list and joined once, so a multi-megabyte object costs one copy.
    """
    pending: list[bytes] = []
    while True:
        try:
            async with asyncio.timeout(inactivity_timeout):
                chunk = await content.readany()
        except aiohttp.ClientError as err:
            raise ConnectionLost(f"watch {path}: {_describe(err)}") from err
        except TimeoutError as err:
            raise WatchStalled(f"watch {path}: no bytes for {inactivity_timeout} s") from err
        except OSError as err:
            raise ConnectionLost(f"watch {path}: {_describe(err)}") from err
        if not chunk:
            break
        end = chunk.find(b"\n")
        if end < 0:
            pending.append(chunk)
            continue
        if pending:
            pending.append(chunk[:end])
            line = b"".join(pending)
            pending.clear()
        else:
            line = chunk[:end]
        if line:
            yield line
        start = end + 1
        while (end := chunk.find(b"\n", start)) >= 0:
            if end > start:
                yield chunk[start:end]
            start = end + 1
        if start < len(chunk):
            pending.append(chunk[start:])
    if pending:
        # A last line without its newline: let the decoder judge it.
        yield b"".join(pending)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header; the HTTP-date form is not used by the API server and is ignored."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def _describe(err: BaseException) -> str:
    text = str(err)
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
