"""The tables of the dispatcher's database, as SQLAlchemy Core sees them (migrations/ creates
them): the jobs (Postgres is the queue's truth; the Redis streams only ring the bell), every
attempt, and per sender the fencing epoch of the replica that sends for it."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

metadata = sa.MetaData()

# queued, sending, retrying: the states a job is still to be sent from.
UNFINISHED = ("queued", "sending", "retrying")

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    # Enqueue order: a recipient's jobs are sent strictly in it.
    sa.Column("seq", sa.BigInteger, sa.Identity(), nullable=False, unique=True),
    sa.Column("tenant_id", sa.Text, nullable=False),
    sa.Column("idempotency_key", sa.Text, nullable=False),
    sa.Column("sender_number", sa.Text, nullable=False),
    sa.Column("recipient_number", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    # [{"url", "content_type"}]
    sa.Column("media", postgresql.JSONB, nullable=False),
    # {"content_sid", "variables"} or null, for the template and its fallback.
    sa.Column("template", postgresql.JSONB, nullable=True),
    sa.Column("fallback_template", postgresql.JSONB, nullable=True),
    sa.Column("priority", sa.Text, nullable=False),  # interactive, bulk
    sa.Column("not_before", sa.DateTime(timezone=True), nullable=True),
    # Sent even to a recipient who opted out (Enqueue's despite_opt_out).
    sa.Column("despite_opt_out", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("state", sa.Text, nullable=False),  # queued … dead
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
    # A sender's work, and a recipient's order: only what is still to be sent.
    sa.Index(
        "jobs_unfinished_by_recipient",
        "tenant_id",
        "sender_number",
        "recipient_number",
        "seq",
        postgresql_where=sa.text("state IN ('queued', 'sending', 'retrying')"),
    ),
    sa.Index("jobs_tenant_id_sender_number_state", "tenant_id", "sender_number", "state"),
    sa.Index(
        "jobs_dead",
        "tenant_id",
        "dead_at",
        "id",
        postgresql_where=sa.text("state = 'dead'"),
    ),
)

attempts = sa.Table(
    "attempts",
    metadata,
    sa.Column("job_id", sa.Text, sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("number", sa.Integer, primary_key=True),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
    # sent, retry, failed, ambiguous, found, paused
    sa.Column("outcome", sa.Text, nullable=False),
    sa.Column("error_code", sa.Integer, nullable=False),
    sa.Column("error_message", sa.Text, nullable=False),
    sa.Column("provider_sid", sa.Text, nullable=True),
    # The sending replica's fencing epoch for the sender.
    sa.Column("epoch", sa.BigInteger, nullable=False),
)

senders = sa.Table(
    "senders",
    metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    sa.Column("sender_number", sa.Text, primary_key=True),
    # The newest epoch a replica claimed the sender at; a change stamped older is refused.
    sa.Column("epoch", sa.BigInteger, nullable=False),
    sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
)
