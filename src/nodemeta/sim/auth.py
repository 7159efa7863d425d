"""Authentication for the simulated API server: bearer tokens, bound service-account tokens and TLS material.

Tokens the server issues are JWTs (HS256 with a per-server secret) carrying the claims of a Kubernetes bound
service-account token: `sub`, `aud`, `exp`, `jti` and the `kubernetes.io` block naming the namespace, service
account and, when bound, the pod and node. TokenReview checks the signature, the expiry, the audiences and that
the objects the token is bound to still exist with the same uids, which is how a real API server rejects a token
whose pod is gone.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import ipaddress
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

DEFAULT_AUDIENCE = "https://kubernetes.default.svc"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class UserInfo:
    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: dict[str, list[str]] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"username": self.username}
        if self.uid:
            out["uid"] = self.uid
        out["groups"] = list(self.groups)
        if self.extra:
            out["extra"] = self.extra
        return out


class TokenError(Exception):
    """The token is not valid; the message is what TokenReview reports in `status.error`."""


@dataclass(frozen=True, slots=True)
class Binding:
    """What a service-account token is bound to (the pod and node parts are optional)."""

    namespace: str
    service_account: str
    service_account_uid: str
    pod_name: str = ""
    pod_uid: str = ""
    node_name: str = ""
    node_uid: str = ""


# Looks an object up by (plural, namespace, name) and returns its uid, or None when it does not exist.
UidLookup = Callable[[str, str, str], str | None]


class Authenticator:
    """Issues and checks this server's tokens. `admin_token` authenticates as a cluster administrator."""

    def __init__(self, clock: Callable[[], float], issuer: str = DEFAULT_AUDIENCE) -> None:
        self._secret = secrets.token_bytes(32)
        self._clock = clock
        self.issuer = issuer
        self.admin_token = "nodemeta-admin-" + secrets.token_hex(16)

    def issue(self, binding: Binding, audiences: list[str] | None = None, expiration_seconds: int = 3600) -> str:
        now = int(self._clock())
        claims: dict[str, Any] = {
            "aud": audiences or [DEFAULT_AUDIENCE],
            "exp": now + expiration_seconds,
            "iat": now,
            "nbf": now,
            "iss": self.issuer,
            "jti": str(uuid.uuid4()),
            "sub": f"system:serviceaccount:{binding.namespace}:{binding.service_account}",
            "kubernetes.io": _bound_claims(binding),
        }
        head = _b64(orjson.dumps({"alg": "HS256", "typ": "JWT"}))
        body = _b64(orjson.dumps(claims))
        sig = _b64(hmac.new(self._secret, f"{head}.{body}".encode(), hashlib.sha256).digest())
        return f"{head}.{body}.{sig}"

    def expiry(self, token: str) -> int:
        return int(self._claims(token)["exp"])

    def _claims(self, token: str) -> dict[str, Any]:
        parts = token.split(".")
        if len(parts) != 3:
            raise TokenError("invalid bearer token")
        signed = f"{parts[0]}.{parts[1]}".encode()
        want = hmac.new(self._secret, signed, hashlib.sha256).digest()
        try:
            got = _unb64(parts[2])
            claims = orjson.loads(_unb64(parts[1]))
        except (ValueError, orjson.JSONDecodeError) as err:
            raise TokenError("invalid bearer token") from err
        if not hmac.compare_digest(want, got) or not isinstance(claims, dict):
            raise TokenError("invalid bearer token, square/go-jose: error in cryptographic primitive")
        return claims

    def authenticate(self, token: str, lookup: UidLookup, audiences: list[str] | None = None) -> UserInfo:
        """The user behind `token`; raises TokenError with the reason otherwise."""
        if not token:
            raise TokenError("token is empty")
        if hmac.compare_digest(token.encode(), self.admin_token.encode()):
            return UserInfo("kubernetes-admin", groups=("system:masters", "system:authenticated"))
        claims = self._claims(token)
        if int(claims.get("exp", 0)) < self._clock():
            raise TokenError("invalid bearer token, service account token has expired")
        token_aud = claims.get("aud") or []
        wanted = audiences or [DEFAULT_AUDIENCE]
        if not set(token_aud) & set(wanted):
            raise TokenError(
                f"invalid bearer token, token audiences {token_aud} is invalid for the target audiences {wanted}"
            )
        k8s = claims.get("kubernetes.io") or {}
        ns = k8s.get("namespace", "")
        sa = k8s.get("serviceaccount") or {}
        if lookup("serviceaccounts", ns, sa.get("name", "")) != sa.get("uid"):
            raise TokenError(f"invalid bearer token, service account {ns}/{sa.get('name')} has been deleted")
        extra: dict[str, list[str]] = {"authentication.kubernetes.io/credential-id": [f"JTI={claims.get('jti')}"]}
        pod = k8s.get("pod")
        if pod:
            if lookup("pods", ns, pod.get("name", "")) != pod.get("uid"):
                raise TokenError(f"invalid bearer token, pod {ns}/{pod.get('name')} has been deleted")
            extra["authentication.kubernetes.io/pod-name"] = [pod["name"]]
            extra["authentication.kubernetes.io/pod-uid"] = [pod["uid"]]
        node = k8s.get("node")
        if node:
            if lookup("nodes", "", node.get("name", "")) != node.get("uid"):
                raise TokenError(f"invalid bearer token, node {node.get('name')} has been deleted")
            extra["authentication.kubernetes.io/node-name"] = [node["name"]]
            extra["authentication.kubernetes.io/node-uid"] = [node["uid"]]
        return UserInfo(
            username=str(claims["sub"]),
            uid=str(sa.get("uid", "")),
            groups=("system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"),
            extra=extra,
        )

    def review(self, body: dict[str, Any], lookup: UidLookup) -> dict[str, Any]:
        """Answer a TokenReview (the caller has checked that `spec.token` is present)."""
        spec = body.get("spec") or {}
        audiences = spec.get("audiences") or None
        status: dict[str, Any]
        try:
            user = self.authenticate(str(spec.get("token", "")), lookup, audiences)
        except TokenError as err:
            status = {"user": {}, "error": str(err)}
        else:
            status = {
                "authenticated": True,
                "user": user.as_json(),
                "audiences": audiences or [DEFAULT_AUDIENCE],
            }
        return {
            "kind": "TokenReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": None},
            "spec": spec,
            "status": status,
        }


def _bound_claims(binding: Binding) -> dict[str, Any]:
    out: dict[str, Any] = {
        "namespace": binding.namespace,
        "serviceaccount": {"name": binding.service_account, "uid": binding.service_account_uid},
    }
    if binding.pod_name:
        out["pod"] = {"name": binding.pod_name, "uid": binding.pod_uid}
    if binding.node_name:
        out["node"] = {"name": binding.node_name, "uid": binding.node_uid}
    return out


@dataclass(frozen=True, slots=True)
class TLSMaterial:
    """PEM bytes of a self-signed CA and a serving certificate it signed."""

    ca_cert: bytes
    cert: bytes
    key: bytes


def make_tls(hosts: list[str], now: dt.datetime | None = None) -> TLSMaterial:
    """A fresh CA and a serving certificate for `hosts` (IP addresses and DNS names), valid for a year."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    start = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(minutes=5)
    end = start + dt.timedelta(days=365)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nodemeta-sim-ca")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return TLSMaterial(
        ca_cert=ca_cert.public_bytes(pem),
        cert=cert.public_bytes(pem),
        key=key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
