"""The declared schema. Alembic's history must produce exactly this (tests/integration/test_migrations.py)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("token_hash", String(64), nullable=False, unique=True),  # sha256 hex of the bearer token
    Column("is_admin", Boolean, nullable=False, default=False),
    Column("time_created", Float, nullable=False),
)

billing_projects = Table(
    "billing_projects",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("status", String(20), nullable=False, default="open"),
    Column("spend_limit", Float, nullable=True),
    Column("time_created", Float, nullable=False),
)

billing_project_users = Table(
    "billing_project_users",
    metadata,
    Column("billing_project", String(100), ForeignKey("billing_projects.name"), primary_key=True),
    Column("user", String(100), ForeignKey("users.name"), primary_key=True),
)

batches = Table(
    "batches",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("user", String(100), nullable=False),
    Column("billing_project", String(100), ForeignKey("billing_projects.name"), nullable=False),
    Column("token", String(200), nullable=False),
    Column("attributes", JSON, nullable=False),
    Column("state", String(20), nullable=False),  # domain.states.BatchState
    Column("closed", Boolean, nullable=False, default=False),
    Column("cancelled", Boolean, nullable=False, default=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("cancel_after_n_failures", Integer, nullable=True),
    Column("callback", Text, nullable=True),
    Column("n_jobs", Integer, nullable=False, default=0),  # committed jobs
    Column("n_completed", Integer, nullable=False, default=0),
    Column("n_succeeded", Integer, nullable=False, default=0),
    Column("n_failed", Integer, nullable=False, default=0),
    Column("n_cancelled", Integer, nullable=False, default=0),
    Column("msec_mcpu", BigInteger, nullable=False, default=0),
    Column("cost", Float, nullable=False, default=0.0),
    Column("time_created", Float, nullable=False),
    Column("time_closed", Float, nullable=True),
    Column("time_completed", Float, nullable=True),
    UniqueConstraint("user", "token"),
    Index(None, "user", "id"),
    Index(None, "billing_project", "id"),
)

batch_updates = Table(
    "batch_updates",
    metadata,
    Column("batch_id", BigInteger, ForeignKey("batches.id"), primary_key=True),
    Column("update_id", Integer, primary_key=True),
    Column("token", String(200), nullable=False),
    Column("n_jobs", Integer, nullable=False),
    Column("start_job_id", Integer, nullable=False),
    Column("committed", Boolean, nullable=False, default=False),
    Column("time_created", Float, nullable=False),
    Column("time_committed", Float, nullable=True),
    UniqueConstraint("batch_id", "token"),
)

jobs = Table(
    "jobs",
    metadata,
    Column("batch_id", BigInteger, ForeignKey("batches.id"), primary_key=True),
    Column("job_id", Integer, primary_key=True),
    Column("update_id", Integer, nullable=False),
    Column("user", String(100), nullable=False),  # denormalised: the scheduler queues per user
    Column("name", String(500), nullable=True),
    Column("state", String(20), nullable=False),  # domain.states.JobState
    Column("pool", String(100), nullable=False),
    Column("cores_mcpu", Integer, nullable=False),
    Column("memory_bytes", BigInteger, nullable=False),
    Column("storage_bytes", BigInteger, nullable=False),
    Column("gpus", Integer, nullable=False, server_default="0"),  # 0002: GPUs the job needs
    Column("gpu_type", String(100), nullable=True),  # 0002: any GPU type when None
    Column("always_run", Boolean, nullable=False),
    Column("n_max_attempts", Integer, nullable=False),
    Column("n_attempts", Integer, nullable=False, default=0),
    Column("n_pending_parents", Integer, nullable=False),
    Column("parent_failed", Boolean, nullable=False, default=False),  # some parent did not succeed
    Column("spec", JSON, nullable=False),  # command, image, env, timeout, files: what the worker needs
    Column("attributes", JSON, nullable=False),
    Column("exit_code", Integer, nullable=True),
    Column("status", JSON, nullable=True),  # last attempt's container statuses, error, out_of_memory
    Column("msec_mcpu", BigInteger, nullable=False, default=0),
    Column("cost", Float, nullable=False, default=0.0),
    Column("time_created", Float, nullable=False),
    Column("time_completed", Float, nullable=True),
    Column("job_group_id", Integer, nullable=False, default=0, server_default="0"),  # 0: the root group
    Column("waiting_reason", String(500), nullable=True),  # 0004: why a Ready job cannot be placed
    Index(None, "state"),
    Index(None, "batch_id", "state", "job_id"),  # point updates stay point lookups without statistics
)

job_parents = Table(
    "job_parents",
    metadata,
    Column("batch_id", BigInteger, primary_key=True),
    Column("job_id", Integer, primary_key=True),
    Column("parent_id", Integer, primary_key=True),
    ForeignKeyConstraint(["batch_id", "job_id"], ["jobs.batch_id", "jobs.job_id"]),
    Index(None, "batch_id", "parent_id"),
)

attempts = Table(
    "attempts",
    metadata,
    Column("batch_id", BigInteger, primary_key=True),
    Column("job_id", Integer, primary_key=True),
    Column("attempt_id", Integer, primary_key=True),  # 1, 2, … per job
    Column("instance_name", String(200), nullable=False),
    Column("cores_mcpu", Integer, nullable=False),
    Column("memory_bytes", BigInteger, nullable=False),
    Column("state", String(20), nullable=False),  # running | ended
    Column("end_reason", String(40), nullable=True),  # success|failed|error|cancelled|lost|timeout
    Column("exit_code", Integer, nullable=True),
    Column("status", JSON, nullable=True),
    Column("time_assigned", Float, nullable=False),
    Column("time_started", Float, nullable=True),
    Column("time_ended", Float, nullable=True),
    ForeignKeyConstraint(["batch_id", "job_id"], ["jobs.batch_id", "jobs.job_id"]),
    Index(None, "instance_name", "state"),
)

instance_collections = Table(
    "instance_collections",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("kind", String(20), nullable=False),  # pool | job_private
    Column("provider", String(50), nullable=False),
    Column("config", JSON, nullable=False),
)

instances = Table(
    "instances",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("collection", String(100), ForeignKey("instance_collections.name"), nullable=False),
    Column("state", String(20), nullable=False),  # pending | active | inactive | deleted
    Column("cores_mcpu", Integer, nullable=False),
    Column("memory_bytes", BigInteger, nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("metadata", JSON, nullable=False),  # provider's own facts: pid, host, …
    Column("gpus", Integer, nullable=False, server_default="0"),  # 0002: GPUs it advertises
    Column("gpu_type", String(100), nullable=True),  # 0002
    Column("reserved_for", String(60), nullable=True),  # 0002: "batch.job" of a job-private instance
    Column("time_created", Float, nullable=False),
    Column("time_activated", Float, nullable=True),
    Column("last_heartbeat", Float, nullable=True),
    Column("time_deleted", Float, nullable=True),
    Index(None, "state"),
)

job_groups = Table(
    "job_groups",
    metadata,
    Column("batch_id", BigInteger, ForeignKey("batches.id"), primary_key=True),
    Column("job_group_id", Integer, primary_key=True),  # 1, 2, … per batch; 0 (the root) is the batch
    Column("update_id", Integer, nullable=False),
    Column("parent_id", Integer, nullable=False),  # 0: a child of the root group
    Column("attributes", JSON, nullable=False),
    Column("callback", Text, nullable=True),
    Column("cancelled", Boolean, nullable=False, default=False),
    Column("cancel_after_n_failures", Integer, nullable=True),  # failures in the group's tree
    Column("time_created", Float, nullable=False),
)

job_group_updates = Table(
    "job_group_updates",
    metadata,
    Column("batch_id", BigInteger, primary_key=True),
    Column("update_id", Integer, primary_key=True),
    Column("start_job_group_id", Integer, nullable=False),  # the update's groups are start .. start+n-1
    Column("n_job_groups", Integer, nullable=False),
    ForeignKeyConstraint(["batch_id", "update_id"], ["batch_updates.batch_id", "batch_updates.update_id"]),
)

job_usage = Table(  # 0004_ui: resource usage samples of running attempts, sent by workers
    "job_usage",
    metadata,
    Column("batch_id", BigInteger, primary_key=True),
    Column("job_id", Integer, primary_key=True),
    Column("attempt_id", Integer, primary_key=True),
    Column("time", Float, primary_key=True),  # when the worker took the sample
    Column("cpu_mcpu", Integer, nullable=False),  # cores used since the previous sample, x1000
    Column("memory_bytes", BigInteger, nullable=False),  # memory in use at the sample
)

# ---------------------------------------------------------------- billing (0004_billing)

billing_rates = Table(
    "billing_rates",
    metadata,
    Column("resource", String(300), primary_key=True),  # e.g. cpu/site, gpu/lab/host1/A100
    Column("version", Integer, primary_key=True),  # a new rate is a new version; old ones never change
    Column("rate", Float, nullable=False),  # currency per unit-hour (domain.billing.pricing.RATE_UNITS)
    Column("time_effective", Float, nullable=False),
)

attempt_charges = Table(
    "attempt_charges",
    metadata,
    Column("batch_id", BigInteger, primary_key=True),
    Column("job_id", Integer, primary_key=True),
    Column("attempt_id", Integer, primary_key=True),
    Column("billing_project", String(100), nullable=False),
    Column("user", String(100), nullable=False),
    Column("resources", JSON, nullable=False),  # [[versioned resource, integer quantity], ...]
    Column("start_ms", BigInteger, nullable=False),  # charged from (epoch milliseconds)
    Column("accrued_ms", BigInteger, nullable=False),  # charged up to; moves with the usage it adds
    Column("ended", Boolean, nullable=False, default=False),
    Index(None, "ended"),
)

batch_usage = Table(
    "batch_usage",
    metadata,
    Column("batch_id", BigInteger, primary_key=True),
    Column("resource", String(300), primary_key=True),  # versioned
    Column("usage", BigInteger, nullable=False),  # quantity x milliseconds
)

daily_usage = Table(
    "daily_usage",
    metadata,
    Column("billing_project", String(100), primary_key=True),
    Column("user", String(100), primary_key=True),
    Column("day", String(10), primary_key=True),  # UTC, YYYY-MM-DD
    Column("resource", String(300), primary_key=True),  # versioned
    Column("usage", BigInteger, nullable=False),
)
