"""The orders service's metrics, beside the kit's gRPC ones."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class OrdersMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter(
            "wamesh_orders_inbound_events",
            "Inbound events handled, by outcome (answered, repeated, silent)",
            ["outcome"],
            registry=registry,
        )
        self.turn_seconds = Histogram(
            "wamesh_orders_turn_seconds",
            "From an inbound event read to its replies handed to the dispatcher",
            registry=registry,
        )
        self.transitions = Counter(
            "wamesh_orders_transitions",
            "Order transitions, by target state and actor",
            ["state", "actor"],
            registry=registry,
        )
        self.messages_enqueued = Counter(
            "wamesh_orders_messages_enqueued",
            "Messages handed to the dispatcher (replies and notifications)",
            registry=registry,
        )
        self.calls_refused = Counter(
            "wamesh_orders_calls_refused",
            "Outbox calls a peer refused for good (e.g. a sender number the tenant removed)",
            registry=registry,
        )
        self.inbound_backlog = Gauge(
            "wamesh_orders_inbound_backlog_seconds",
            "How long the oldest inbound event the replicas have not yet handled has waited "
            "(0: none waits); what to scale replicas on and alert against",
            registry=registry,
        )
        self.carts_expired = Counter(
            "wamesh_orders_carts_expired",
            "Carts cancelled after a day untouched",
            registry=registry,
        )
