"""Workers with their leases, sessions with their holder and fencing epoch, and the event log.

Revision ID: 0001
Revises:
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("instance_id", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("endpoint", sa.Text, nullable=False),
        sa.Column("capacity", sa.Integer, nullable=False),
        sa.Column("labels", postgresql.JSONB, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("load", sa.Float, nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("workers_instance_id", "workers", ["instance_id"])
    op.create_index("workers_kind_state_id", "workers", ["kind", "state", "id"])
    op.create_table(
        "sessions",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("required_labels", postgresql.JSONB, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("worker_id", sa.Text, sa.ForeignKey("workers.id"), nullable=True),
        sa.Column("epoch", sa.BigInteger, nullable=False),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        # As the holder last reported it (qr_required, connecting, …); '' until then.
        sa.Column("status", sa.Text, nullable=False, server_default=""),
        sa.Column("status_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("sessions_worker_id", "sessions", ["worker_id"])
    op.create_index("sessions_tenant_id_id", "sessions", ["tenant_id", "id"])
    op.create_index("sessions_state_kind", "sessions", ["state", "kind"])
    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("worker_id", sa.Text, nullable=False),
        sa.Column("session_id", sa.Text, nullable=False),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("epoch", sa.BigInteger, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("events_worker_id_id", "events", ["worker_id", "id"])
    op.create_index("events_session_id_id", "events", ["session_id", "id"])
    op.create_index("events_tenant_id_id", "events", ["tenant_id", "id"])


def downgrade() -> None:
    op.drop_table("events")
    op.drop_table("sessions")
    op.drop_table("workers")
