"""gRPC plumbing shared by every service (grpc.aio only).

- ``server``: :class:`GrpcService`, the bootstrap (health, reflection, interceptors, SIGTERM).
- ``client``: :func:`make_channel`, ``dns:///`` + round_robin, default deadlines, safe retries.
- ``auth``: bearer tokens, per-method access, the current principal, tenant scoping.
- ``errors``: domain errors ⇄ status codes, the one mapping.
- ``metrics``: RPC counters and latency, the ``/metrics`` endpoint.
"""
