"""The conversations service served in-process on a real socket, over real Postgres and Redis."""

from __future__ import annotations

from tests.service_fixtures import ServiceFixtures
from tests.services.conversations.conversations_testkit import make_settings
from wamesh.conversations.v1.conversations_pb2_grpc import ConversationStoreStub
from wamesh_conversations.app import conversations_service

fixtures = ServiceFixtures(
    "conversations", conversations_service, make_settings, ConversationStoreStub
)
conversations_dsn = fixtures.dsn
settings = fixtures.settings
metrics = fixtures.metrics
service = fixtures.service
connect = fixtures.connect
admin = fixtures.admin
internal = fixtures.internal
