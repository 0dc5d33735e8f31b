"""The tables of the workers database, as SQLAlchemy Core sees them (migrations/ creates them)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

metadata = sa.MetaData()

workers = sa.Table(
    "workers",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    # One live worker per instance id: a second process with the same id is refused.
    sa.Column("instance_id", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("endpoint", sa.Text, nullable=False),
    sa.Column("capacity", sa.Integer, nullable=False),
    sa.Column("labels", postgresql.JSONB, nullable=False),
    sa.Column("state", sa.Text, nullable=False),  # active, draining, lost, gone
    sa.Column("load", sa.Float, nullable=False),
    sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_heartbeat_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("workers_instance_id", "instance_id"),
    sa.Index("workers_kind_state_id", "kind", "state", "id"),
)

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("tenant_id", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("required_labels", postgresql.JSONB, nullable=False),
    sa.Column("state", sa.Text, nullable=False),  # pending, assigned, moving
    sa.Column("worker_id", sa.Text, sa.ForeignKey("workers.id"), nullable=True),
    # While moving: the worker it is reserved for, once its holder has stopped.
    sa.Column("moving_to", sa.Text, sa.ForeignKey("workers.id"), nullable=True),
    # Since when it has waited for a worker (created, its worker lost, or moving): what the
    # placement latency metric measures.
    sa.Column("waiting_since", sa.DateTime(timezone=True), nullable=True),
    # Fencing: rises on every change of holder, so an older holder's actions are refused.
    sa.Column("epoch", sa.BigInteger, nullable=False),
    sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    # As the holder last reported it (qr_required, connecting, …); '' until then.
    sa.Column("status", sa.Text, nullable=False, server_default=""),
    sa.Column("status_at", sa.DateTime(timezone=True), nullable=True),
    sa.Index("sessions_worker_id", "worker_id"),
    sa.Index("sessions_tenant_id_id", "tenant_id", "id"),
    sa.Index("sessions_state_kind", "state", "kind"),
    sa.Index("sessions_moving_to", "moving_to"),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("worker_id", sa.Text, nullable=False),
    sa.Column("session_id", sa.Text, nullable=False),
    sa.Column("tenant_id", sa.Text, nullable=False),
    sa.Column("epoch", sa.BigInteger, nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("events_worker_id_id", "worker_id", "id"),
    sa.Index("events_session_id_id", "session_id", "id"),
    sa.Index("events_tenant_id_id", "tenant_id", "id"),
)
