"""Channels to other wamesh services: ``dns:///`` targets, round_robin, deadlines, safe retries.

Inside Kubernetes a target is a headless Service (``dns:///tenants:50051``): DNS lists every
replica and round_robin spreads calls over them. Every call gets a deadline (a default when
the caller sets none), and only methods marked idempotent are retried, by grpc itself,
on UNAVAILABLE: a retried write that was not idempotent could happen twice.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, cast

import grpc
import grpc.aio
from opentelemetry.instrumentation.grpc import aio_client_interceptors
from opentelemetry.trace import TracerProvider

from wamesh_kit.rpc._interceptors import (
    CallDetails,
    ClientInterceptor,
    client_interceptors,
    replace_details,
    split_method,
)
from wamesh_kit.rpc.auth import bearer_interceptors
from wamesh_kit.telemetry import tracing_wanted

DEFAULT_TIMEOUT_S = 5.0
# The longest a channel waits between reconnection attempts to a peer that went away.
MAX_RECONNECT_BACKOFF_S = 5.0
RETRY_POLICY: dict[str, Any] = {
    "maxAttempts": 4,
    "initialBackoff": "0.1s",
    "maxBackoff": "2s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}
# Stops retrying while most calls to a peer fail, so retries cannot snowball into an outage.
RETRY_THROTTLING: dict[str, Any] = {"maxTokens": 10, "tokenRatio": 0.1}
CHANNEL_OPTIONS: Sequence[tuple[str, Any]] = (
    ("grpc.enable_retries", 1),
    # The service config is ours alone, never one published in DNS TXT records.
    ("grpc.service_config_disable_resolution", 1),
    # Find a dead peer on an idle connection before a call waits on it until its deadline.
    ("grpc.keepalive_time_ms", 30_000),
    # A restarted peer is found within seconds (the default backoff grows to two minutes).
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", int(MAX_RECONNECT_BACKOFF_S * 1000)),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
)
_SCHEMES = ("dns:", "unix:", "unix-abstract:", "ipv4:", "ipv6:")


def make_channel(
    target: str,
    *,
    token: str | None = None,
    idempotent_methods: Iterable[str] = (),
    default_timeout: float = DEFAULT_TIMEOUT_S,
    options: Sequence[tuple[str, Any]] = (),
    tracer_provider: TracerProvider | None = None,
) -> grpc.aio.Channel:
    """An insecure grpc.aio channel to ``target`` (``host:port`` means ``dns:///host:port``).

    ``token`` is sent as a bearer token on every call. ``idempotent_methods`` are full method
    names (``/wamesh.tenants.v1.TenantRegistry/GetTenant``) or whole services
    (``wamesh.tenants.v1.TenantRegistry``) that grpc may retry. Calls without a timeout get
    ``default_timeout`` seconds. Spans go to ``tracer_provider`` (default: the global one).
    """
    interceptors: list[ClientInterceptor] = default_deadline_interceptors(default_timeout)
    if token is not None:
        interceptors += bearer_interceptors(token)
    if tracing_wanted(tracer_provider):
        interceptors += aio_client_interceptors(tracer_provider)  # type: ignore[no-untyped-call]
    config = json.dumps(service_config(idempotent_methods))
    return grpc.aio.insecure_channel(
        dns_target(target),
        options=[*CHANNEL_OPTIONS, ("grpc.service_config", config), *options],
        # The stubs type interceptors as "_PartialStubMustCastOrIgnore".
        interceptors=cast("list[Any]", interceptors),
    )


def dns_target(target: str) -> str:
    """``host:port`` → ``dns:///host:port``; a target with a scheme is kept as it is."""
    if "://" in target or target.startswith(_SCHEMES):
        return target
    return f"dns:///{target}"


def service_config(idempotent_methods: Iterable[str] = ()) -> dict[str, Any]:
    """The channel's service config: round_robin, and a retry policy for idempotent methods."""
    config: dict[str, Any] = {"loadBalancingConfig": [{"round_robin": {}}]}
    names = [_method_config_name(name) for name in sorted(set(idempotent_methods))]
    if names:
        config["methodConfig"] = [{"name": names, "retryPolicy": RETRY_POLICY}]
        config["retryThrottling"] = RETRY_THROTTLING
    return config


def _method_config_name(name: str) -> dict[str, str]:
    service, method = split_method(name)
    if not service:
        raise ValueError(f"not a gRPC service or method name: {name!r}")
    return {"service": service, "method": method} if method else {"service": service}


def default_deadline_interceptors(timeout: float) -> list[ClientInterceptor]:
    """Client interceptors that give ``timeout`` seconds to every call that has no deadline."""
    if timeout <= 0:
        raise ValueError("the default timeout must be positive")

    def with_deadline(details: CallDetails) -> CallDetails:
        return details if details.timeout is not None else replace_details(details, timeout=timeout)

    return client_interceptors(with_deadline)
