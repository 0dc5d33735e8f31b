"""Is this request Twilio, speaking for this tenant? ``X-Twilio-Signature`` checked against
the URL Twilio called, with the tenant's auth token, by the twilio library's RequestValidator.

The URL must be the public one: ``WAMESH_PUBLIC_BASE_URL`` when set; else the scheme, host
and port from ``X-Forwarded-Proto/Host/Port``, believed only from a trusted proxy; else what
this server saw. The validator tries the URL with and without the default port (Twilio signs
either way), and covers every value of repeated fields.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from starlette.requests import Request
from twilio.request_validator import (
    SIGNATURE_HEADER,
    SIGNATURE_SETTINGS_HEADER,
    RequestValidator,
    compare,
    get_signature_algorithm,
)

from wamesh_ingress.settings import IPNetwork
from wamesh_ingress.webhooks import Form


class PublicUrls:
    def __init__(self, base_url: str | None, trusted_proxies: Sequence[IPNetwork]) -> None:
        self._base_url = base_url
        self._trusted = tuple(trusted_proxies)

    def is_trusted(self, peer: str | None) -> bool:
        if peer is None or not self._trusted:
            return False
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in network for network in self._trusted)

    def of(self, request: Request) -> str:
        """The URL Twilio called for ``request``, the one its signature covers."""
        scope = request.scope
        path: bytes = scope.get("raw_path") or scope["path"].encode()
        query: bytes = scope.get("query_string", b"")
        tail = path.decode("latin-1") + (f"?{query.decode('latin-1')}" if query else "")
        if self._base_url:
            return self._base_url + tail
        headers = request.headers
        peer = request.client.host if request.client else None
        scheme: str = scope["scheme"]
        if self.is_trusted(peer) and "x-forwarded-host" in headers:
            scheme = _first(headers.get("x-forwarded-proto")) or scheme
            host = _first(headers["x-forwarded-host"])
            port = _first(headers.get("x-forwarded-port"))
            if port and ":" not in host.rsplit("]", 1)[-1]:
                host = f"{host}:{port}"
            return f"{scheme}://{host}{tail}"
        # request.url (a parsed URL) only without a Host header: with one, the URL is
        # known without building and parsing it.
        return f"{scheme}://{headers.get('host') or request.url.netloc}{tail}"

    def client_ip(self, request: Request) -> str:
        """The caller's address: behind trusted proxies, the last hop they did not add."""
        peer = request.client.host if request.client else "unknown"
        if not self.is_trusted(peer):
            return peer
        hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",")]
        for hop in reversed([h for h in hops if h]):
            if not self.is_trusted(hop):
                return hop
        return peer


def signed_by(validator: RequestValidator, url: str, form: Form, request: Request) -> bool:
    signature = request.headers.get(SIGNATURE_HEADER)
    if not signature:
        return False
    algorithm = get_signature_algorithm(request.headers.get(SIGNATURE_SETTINGS_HEADER))
    # The URL as called matches almost always, so one signature is computed for it first;
    # validate(), which computes one with and one without the default port (and checks
    # bodySHA256), is left for the rest.
    if compare(validator.compute_signature(url, form, algorithm), signature):
        return True
    return bool(validator.validate(url, form, signature, algorithm))


def _first(value: str | None) -> str:
    """The client-side value of a possibly comma-joined forwarded header."""
    return (value or "").split(",")[0].strip()
