"""Run in a subprocess by test_telemetry: a process that traces SQL, Redis, a gRPC call over
wamesh's own channel, and its own span.

Its span continues a sampled trace, as a stream consumer continues a traced producer's: even a
process that starts no trace of its own records that span, so an exporter installed without an
endpoint would send it.
"""

from __future__ import annotations

import asyncio
import sys

import redis.asyncio as aioredis
from opentelemetry import propagate, trace
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from sqlalchemy import text

from wamesh_kit.db import make_engine
from wamesh_kit.rpc.client import make_channel
from wamesh_kit.telemetry import (
    configure_tracing,
    instrument_engine,
    instrument_redis,
    shutdown_tracing,
)

# A sampled remote parent (flags 01), from a traced caller.
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


async def main(
    otlp_endpoint: str | None, database_url: str, redis_url: str, grpc_target: str
) -> None:
    configure_tracing("telemetry-probe", otlp_endpoint=otlp_endpoint)
    instrument_redis()
    engine = make_engine(database_url, pool_size=1)
    instrument_engine(engine)
    parent = propagate.extract({"traceparent": TRACEPARENT})
    with trace.get_tracer("probe").start_as_current_span("probe-root", context=parent):
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        client = aioredis.Redis.from_url(redis_url)
        await client.ping()
        await client.aclose()
        # Any unary call will do: the collector's own, with nothing in it. Called by its path,
        # as opentelemetry-proto's generated stub has no annotations.
        async with make_channel(grpc_target) as channel:
            export = channel.unary_unary(
                EXPORT_METHOD,
                request_serializer=trace_service_pb2.ExportTraceServiceRequest.SerializeToString,
                response_deserializer=trace_service_pb2.ExportTraceServiceResponse.FromString,
            )
            await export(trace_service_pb2.ExportTraceServiceRequest())
    await engine.dispose()
    shutdown_tracing()


if __name__ == "__main__":
    endpoint = sys.argv[1] or None
    asyncio.run(main(endpoint, sys.argv[2], sys.argv[3], sys.argv[4]))
