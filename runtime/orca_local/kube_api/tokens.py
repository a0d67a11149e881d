"""TokenRequest: ``POST .../serviceaccounts/{name}/token``, as the API server serves it.

A kubelet asks for a token per projected ``serviceAccountToken`` source; so does ORCA's
runtime for its burst pods. The emulator answers as the real server does:

- 404 when the service account is missing; the token is for its ``audiences`` (none
  given: the server's own, ``https://kubernetes.default.svc.cluster.local``);
- ``expirationSeconds`` defaults to 3600 and must be at least 600 and at most 2^32
  (422 otherwise); with a maximum (``--service-account-max-token-expiration``) a longer
  request is cut to it, and ``status.expirationTimestamp`` says so;
- a ``boundObjectRef`` to a Pod must name an existing pod (404) with that uid (409),
  and the token's claims carry the pod, as bound tokens' do.

Tokens are JWTs with the real claim set, signed with HS256 under a key of the emulator
(a real server signs with RS256 under its service-account key); nothing here verifies
them. The ServiceAccount admission plugin that injects ``kube-api-access-*`` volumes
into pods is not emulated: pods carry the volumes their manifests declare.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import secrets
import uuid
from typing import Any

from . import errors
from .store import Obj, Store

ISSUER = "https://kubernetes.default.svc.cluster.local"
DEFAULT_SECONDS = 3600
MIN_SECONDS = 600
MAX_SECONDS = 2**32


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _time(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class TokenIssuer:
    """Issues service-account tokens; ``max_seconds`` caps their lifetime, as the server's
    ``--service-account-max-token-expiration`` does."""

    def __init__(self, store: Store, max_seconds: int | None = None) -> None:
        self.store = store
        self.max_seconds = max_seconds
        self._key = secrets.token_bytes(32)

    def request(self, namespace: str, name: str, body: Obj) -> Obj:
        spec = dict(body.get("spec") or {})
        seconds = int(spec.get("expirationSeconds") or DEFAULT_SECONDS)
        if seconds < MIN_SECONDS:
            raise errors.invalid(
                "TokenRequest",
                "authentication.k8s.io",
                name,
                "spec.expirationSeconds",
                f"Invalid value: {seconds}: may not specify a duration less than 10 minutes",
            )
        if seconds > MAX_SECONDS:
            raise errors.invalid(
                "TokenRequest",
                "authentication.k8s.io",
                name,
                "spec.expirationSeconds",
                f"Invalid value: {seconds}: may not specify a duration larger than 2^32 seconds",
            )
        account = self.store.get(("", "serviceaccounts"), (namespace, name))
        if account is None:
            raise errors.not_found("", "serviceaccounts", name)
        claims_pod = self._bound_pod(namespace, spec.get("boundObjectRef"))

        if self.max_seconds is not None:
            seconds = min(seconds, self.max_seconds)
        audiences = list(spec.get("audiences") or [ISSUER])
        issued = dt.datetime.now(dt.UTC).replace(microsecond=0)
        expires = issued + dt.timedelta(seconds=seconds)
        private: dict[str, Any] = {
            "namespace": namespace,
            "serviceaccount": {"name": name, "uid": account["metadata"]["uid"]},
        }
        if claims_pod is not None:
            private["pod"] = claims_pod
        claims = {
            "aud": audiences,
            "exp": int(expires.timestamp()),
            "iat": int(issued.timestamp()),
            "nbf": int(issued.timestamp()),
            "iss": ISSUER,
            "jti": str(uuid.uuid4()),
            "kubernetes.io": private,
            "sub": f"system:serviceaccount:{namespace}:{name}",
        }
        spec.update({"audiences": audiences, "expirationSeconds": seconds})
        return {
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": namespace, "creationTimestamp": None},
            "spec": spec,
            "status": {"token": self._sign(claims), "expirationTimestamp": _time(expires)},
        }

    def _bound_pod(self, namespace: str, ref: Obj | None) -> Obj | None:
        if not ref:
            return None
        if ref.get("kind") != "Pod":
            # Secrets and Nodes can be bound too; the emulator's callers bind to pods.
            raise errors.bad_request(f"cannot bind a token to a {ref.get('kind')}")
        pod = self.store.get(("", "pods"), (namespace, str(ref.get("name"))))
        if pod is None:
            raise errors.not_found("", "pods", str(ref.get("name")))
        uid = pod["metadata"]["uid"]
        if ref.get("uid") and ref["uid"] != uid:
            raise errors.conflict(
                "",
                "pods",
                str(ref.get("name")),
                f"the UID in the bound object reference ({ref['uid']}) does not match the "
                f"UID in record. The object might have been deleted and then recreated",
            )
        return {"name": pod["metadata"]["name"], "uid": uid}

    def _sign(self, claims: Obj) -> str:
        header = {"alg": "HS256", "kid": hashlib.sha256(self._key).hexdigest()[:16]}
        signing = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        signature = hmac.new(self._key, signing.encode(), hashlib.sha256).digest()
        return f"{signing}.{_b64(signature)}"
