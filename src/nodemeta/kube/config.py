"""Where the cluster is and how to authenticate: kubeconfig, in-cluster service account, exec plugins.

The parsing is the official `kubernetes` package's asyncio config loader (`kubernetes.aio.config`), used for its
configuration logic only: its generated API classes and models are far too slow for the watch path. It fills a
`Configuration` object; this module turns that into a small `ClusterConfig` (server URL, an `ssl.SSLContext`, and
credentials that are evaluated again before every request, so rotating service-account tokens and expiring exec
plugin credentials keep working).

Lookup order, as controller-runtime does it: an explicit path, then `$KUBECONFIG`, then the in-cluster service
account (when `KUBERNETES_SERVICE_HOST` is set and no context was asked for), then `~/.kube/config`.

The loader is imported lazily (it pulls in pydantic models and costs about half a second), and is treated as
untyped: every call into it is confined to this module, and its exceptions become `ConfigError` here.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml

from nodemeta.kube.errors import ConfigError

__all__ = ["BearerToken", "ClusterConfig", "Credentials", "load_config"]

# Where the kubelet mounts a pod's service-account token and the cluster CA.
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
_LOADER_LOGGER = "kubernetes.aio.config.kube_config"


class Credentials(Protocol):
    """The Authorization header for the next request, re-evaluated each time (tokens rotate)."""

    async def authorization(self) -> str | None:
        """The header value, or None to send no Authorization header."""
        ...

    def rejected(self) -> None:
        """The server answered 401 to the current credentials: refresh them before the next request."""
        ...


@dataclass(frozen=True, slots=True)
class BearerToken:
    """A fixed bearer token (tests, or a token handed over by another component)."""

    token: str

    async def authorization(self) -> str | None:
        return f"Bearer {self.token}"

    def rejected(self) -> None:
        """A fixed token cannot be refreshed; the 401 reaches the caller."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterConfig:
    """How to reach one API server. Immutable; the credentials object is what changes over time."""

    server: str
    # None for plain http. For https it carries the cluster CA and any client certificate.
    ssl_context: ssl.SSLContext | None = None
    # The name to verify the server certificate against when it differs from the URL's host (`tls-server-name`).
    tls_server_name: str | None = None
    credentials: Credentials | None = None
    # Where this configuration came from, for logs and error messages.
    source: str = ""

    async def authorization(self) -> str | None:
        """The current Authorization header value (None = anonymous)."""
        if self.credentials is None:
            return None
        return await self.credentials.authorization()

    def credentials_rejected(self) -> None:
        """Called by the client on 401 so that exec plugins run again before the next request."""
        if self.credentials is not None:
            self.credentials.rejected()


async def load_config(kubeconfig: str | None = None, context: str | None = None) -> ClusterConfig:
    """Find and load the cluster configuration; raises ConfigError with the reason when there is none."""
    if kubeconfig:
        return await _from_kubeconfig(kubeconfig, context)
    env = os.environ.get("KUBECONFIG", "")
    if env:
        return await _from_kubeconfig(env, context)
    in_cluster_error: ConfigError | None = None
    if context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        try:
            return _in_cluster()
        except ConfigError as err:
            in_cluster_error = err
    home = str(Path.home() / ".kube" / "config")
    if _existing_files(home):
        return await _from_kubeconfig(home, context)
    if in_cluster_error is not None:
        raise ConfigError(f"{in_cluster_error}, and there is no {home}")
    raise ConfigError(
        f"no Kubernetes configuration found: no kubeconfig given, $KUBECONFIG unset, not in a cluster, no {home}"
    )


# -- kubeconfig -----------------------------------------------------------------------------------------------------


def _existing_files(paths: str) -> list[str]:
    """The files of a `:`-separated kubeconfig list that exist (a small blocking stat, done once at start-up)."""
    return [p for p in paths.split(os.pathsep) if p and Path(p).expanduser().is_file()]


async def _from_kubeconfig(paths: str, context: str | None) -> ClusterConfig:
    existing = _existing_files(paths)
    if not existing:
        raise ConfigError(f"kubeconfig not found: {paths}")
    source = f"kubeconfig {os.pathsep.join(existing)}" + (f" (context {context})" if context else "")
    kube_config: Any = importlib.import_module("kubernetes.aio.config.kube_config")
    configuration = _new_configuration()
    with _loader_errors() as logged:
        try:
            loader = await kube_config.load_kube_config(
                config_file=os.pathsep.join(existing),
                context=context,
                client_configuration=configuration,
                persist_config=False,  # never write back to the user's kubeconfig
            )
        except Exception as err:  # an untyped parser: malformed files raise anything from KeyError to YAMLError
            raise ConfigError(f"{source}: {_explain(err)}") from err
    has_token = bool(configuration.api_key.get("BearerToken"))
    if not has_token and not configuration.cert_file and logged:
        # The loader logs (rather than raises) a failing exec plugin and carries on without credentials.
        raise ConfigError(f"{source}: no credentials: {'; '.join(logged)}")
    refresh: _ExecRefresh | None = None
    if _uses_exec(loader):
        refresh = _ExecRefresh(loader)
        configuration.refresh_api_key_hook = refresh
    return ClusterConfig(
        server=str(configuration.host).rstrip("/"),
        ssl_context=_ssl_context(configuration, source),
        tls_server_name=getattr(configuration, "tls_server_name", None) or None,
        credentials=_LoaderCredentials(configuration, refresh, source) if has_token else None,
        source=source,
    )


def _explain(err: Exception) -> str:
    """The loader's own message when it has one; otherwise say the file's structure is wrong."""
    exceptions: Any = importlib.import_module("kubernetes.aio.config.config_exception")
    if isinstance(err, OSError | yaml.YAMLError | exceptions.ConfigException):
        return str(err)
    return f"not a valid kubeconfig (expected clusters, contexts and users maps): {type(err).__name__}: {err}"


def _uses_exec(loader: Any) -> bool:
    user = getattr(loader, "_user", None)
    return user is not None and "exec" in user


@contextlib.contextmanager
def _loader_errors() -> Iterator[list[str]]:
    """Collect the errors the loader logs instead of raising (exec plugin failures)."""
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    handler = Collect(logging.ERROR)
    logger = logging.getLogger(_LOADER_LOGGER)
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


# -- in-cluster -----------------------------------------------------------------------------------------------------


def _in_cluster() -> ClusterConfig:
    incluster: Any = importlib.import_module("kubernetes.aio.config.incluster_config")
    configuration = _new_configuration()
    source = f"in-cluster service account ({SERVICE_ACCOUNT_DIR})"
    try:
        # With try_refresh_token the loader installs a hook that re-reads the token file every minute, since
        # projected service-account tokens are rotated by the kubelet.
        incluster.InClusterConfigLoader(
            token_filename=str(SERVICE_ACCOUNT_DIR / "token"),
            cert_filename=str(SERVICE_ACCOUNT_DIR / "ca.crt"),
            try_refresh_token=True,
            environ=os.environ,
        ).load_and_set(configuration)
    except Exception as err:  # ConfigException or OSError from an untyped loader
        raise ConfigError(f"{source}: {err}") from err
    return ClusterConfig(
        server=str(configuration.host).rstrip("/"),
        ssl_context=_ssl_context(configuration, source),
        credentials=_LoaderCredentials(configuration, None, source),
        source=source,
    )


# -- shared ---------------------------------------------------------------------------------------------------------


def _new_configuration() -> Any:
    client: Any = importlib.import_module("kubernetes.aio.client")
    return client.Configuration()


def _ssl_context(configuration: Any, source: str) -> ssl.SSLContext | None:
    if not str(configuration.host).startswith("https"):
        return None
    try:
        context = ssl.create_default_context(cafile=configuration.ssl_ca_cert or None)
        if configuration.cert_file:
            context.load_cert_chain(configuration.cert_file, configuration.key_file or None)
    except (OSError, ssl.SSLError) as err:
        raise ConfigError(f"{source}: unusable TLS material: {err}") from err
    if not configuration.verify_ssl:  # insecure-skip-tls-verify
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class _ExecRefresh:
    """The loader's refresh hook for exec plugins: run the plugin again when its credential expires or is rejected.

    The loader re-runs the plugin by itself only once the credential is within 5 minutes of its
    `expirationTimestamp`; a credential without one is kept until the server rejects it, as kubectl does.
    """

    def __init__(self, loader: Any) -> None:
        self._loader = loader
        self.stale = False

    async def __call__(self, configuration: Any) -> None:
        loader = self._loader
        if self.stale:
            with contextlib.suppress(AttributeError):
                del loader.exec_plugin_expiry
        elif getattr(loader, "exec_plugin_expiry", None) is None:
            return
        self.stale = False
        await loader.load_from_exec_plugin()
        token = getattr(loader, "token", None)
        if token:
            configuration.api_key["BearerToken"] = token


class _LoaderCredentials:
    """Credentials read from a loader-filled Configuration through its refresh hook."""

    def __init__(self, configuration: Any, refresh: _ExecRefresh | None, source: str) -> None:
        self._configuration = configuration
        self._refresh = refresh
        self._source = source

    async def authorization(self) -> str | None:
        try:
            value = await self._configuration.get_api_key_with_prefix("BearerToken")
        except Exception as err:  # the hook re-reads files and runs plugins: OSError, ConfigException, ...
            raise ConfigError(f"{self._source}: refreshing credentials failed: {err}") from err
        # A token file written with a trailing newline would otherwise make an invalid header.
        return str(value).strip() if value else None

    def rejected(self) -> None:
        if self._refresh is not None:
            self._refresh.stale = True
