"""Jobs, their attempts, and each sender's fencing epoch.

Revision ID: 0001
Revises:
Create Date: 2026-12-06
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
        "jobs",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("seq", sa.BigInteger, sa.Identity(), nullable=False, unique=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("idempotency_key", sa.Text, nullable=False),
        sa.Column("sender_number", sa.Text, nullable=False),
        sa.Column("recipient_number", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("media", postgresql.JSONB, nullable=False),
        sa.Column("template", postgresql.JSONB, nullable=True),
        sa.Column("fallback_template", postgresql.JSONB, nullable=True),
        sa.Column("priority", sa.Text, nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=True),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error_code", sa.Integer, nullable=False),
        sa.Column("last_error_message", sa.Text, nullable=False),
        sa.Column("provider_sid", sa.Text, nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dead_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("tenant_id", "idempotency_key", name="jobs_tenant_id_idempotency_key"),
    )
    op.create_index(
        "jobs_unfinished_by_recipient",
        "jobs",
        ["tenant_id", "sender_number", "recipient_number", "seq"],
        postgresql_where=sa.text("state IN ('queued', 'sending', 'retrying')"),
    )
    op.create_index(
        "jobs_tenant_id_sender_number_state", "jobs", ["tenant_id", "sender_number", "state"]
    )
    op.create_index(
        "jobs_dead",
        "jobs",
        ["tenant_id", "dead_at", "id"],
        postgresql_where=sa.text("state = 'dead'"),
    )
    op.create_table(
        "attempts",
        sa.Column(
            "job_id", sa.Text, sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("number", sa.Integer, primary_key=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("error_code", sa.Integer, nullable=False),
        sa.Column("error_message", sa.Text, nullable=False),
        sa.Column("provider_sid", sa.Text, nullable=True),
        sa.Column("epoch", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "senders",
        sa.Column("tenant_id", sa.Text, primary_key=True),
        sa.Column("sender_number", sa.Text, primary_key=True),
        sa.Column("epoch", sa.BigInteger, nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("senders")
    op.drop_table("attempts")
    op.drop_table("jobs")
