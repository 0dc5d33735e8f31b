"""The ingress's Prometheus metrics, registered on the registry the app is given."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class IngressMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "wamesh_ingress_requests",
            "Requests by route and outcome",
            ["route", "outcome"],
            registry=registry,
        )
        self.latency = Histogram(
            "wamesh_ingress_request_seconds",
            "Time to answer, by route",
            ["route"],
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15),
            registry=registry,
        )
        self.signature_failures = Counter(
            "wamesh_ingress_signature_failures",
            "Requests refused for their signature",
            registry=registry,
        )
        self.duplicates = Counter(
            "wamesh_ingress_duplicates",
            "Webhooks whose MessageSid the store already held",
            registry=registry,
        )
        self.repeats = Counter(
            "wamesh_ingress_repeats",
            "Webhooks whose MessageSid was seen before (sent to the store again, not counted"
            " against the rate again)",
            registry=registry,
        )
        self.rate_limited = Counter(
            "wamesh_ingress_rate_limited",
            "Inbound messages over the customer's limit",
            registry=registry,
        )
        self.dependency_errors = Counter(
            "wamesh_ingress_dependency_errors",
            "Failed calls, by dependency",
            ["dependency"],
            registry=registry,
        )
        self.spilled = Counter(
            "wamesh_ingress_spilled", "Webhooks kept in the spill stream", registry=registry
        )
        self.spill_failures = Counter(
            "wamesh_ingress_spill_failures",
            "Webhooks the store did not take and the spill could not keep (answered 503)",
            registry=registry,
        )
        self.store_breaker_open = Gauge(
            "wamesh_ingress_store_breaker_open",
            "1 while webhooks spill without trying the store (it failed a moment ago)",
            registry=registry,
        )
        self.store_gave_up = Counter(
            "wamesh_ingress_store_gave_up",
            "Webhooks spilled because the store had not answered in their time",
            registry=registry,
        )
        # The labelled children ``answered`` has used, by route (and outcome): labels() would
        # give the same ones, but looks each up under a lock, on every request.
        self._requests_of: dict[str, dict[str, Counter]] = {}
        self._latency_of: dict[str, Histogram] = {}

    def answered(self, route: str, outcome: str, seconds: float) -> None:
        """Count an answer of ``route`` under ``outcome``, and time it."""
        by_outcome = self._requests_of.get(route)
        if by_outcome is None:
            by_outcome = self._requests_of[route] = {}
        requests = by_outcome.get(outcome)
        if requests is None:
            requests = by_outcome[outcome] = self.requests.labels(route, outcome)
        requests.inc()
        latency = self._latency_of.get(route)
        if latency is None:
            latency = self._latency_of[route] = self.latency.labels(route)
        latency.observe(seconds)
