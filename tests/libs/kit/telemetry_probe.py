"""Run in a subprocess by test_telemetry: a process that traces SQL, Redis, a gRPC call over
wamesh's own channel, and its own span."""

from __future__ import annotations

import asyncio
import sys

import redis.asyncio as aioredis
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from sqlalchemy import text

from wamesh_kit.db import make_engine
from wamesh_kit.rpc.client import make_channel
from wamesh_kit.telemetry import (
    configure_tracing,
    instrument_engine,
    instrument_redis,
    shutdown_tracing,
)


async def main(
    otlp_endpoint: str | None, database_url: str, redis_url: str, grpc_target: str
) -> None:
    configure_tracing("telemetry-probe", otlp_endpoint=otlp_endpoint)
    instrument_redis()
    engine = make_engine(database_url, pool_size=1)
    instrument_engine(engine)
    with trace.get_tracer("probe").start_as_current_span("probe-root"):
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        client = aioredis.Redis.from_url(redis_url)
        await client.ping()
        await client.aclose()
        # Any unary call will do: the collector's own, with nothing in it.
        async with make_channel(grpc_target) as channel:
            stub = trace_service_pb2_grpc.TraceServiceStub(channel)
            await stub.Export(trace_service_pb2.ExportTraceServiceRequest())
    await engine.dispose()
    shutdown_tracing()


if __name__ == "__main__":
    endpoint = sys.argv[1] or None
    asyncio.run(main(endpoint, sys.argv[2], sys.argv[3], sys.argv[4]))
