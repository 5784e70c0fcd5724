"""Settings of the studio process (not of training runs: those live in RunSpec)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from limits import parse as parse_rate
from pydantic import AfterValidator, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_data_dir() -> Path:
    return Path.home() / ".lorastudio"


def _rate_limit(value: str) -> str:
    """A rate in the `limits` notation ("10 per 15 minutes"), checked at start instead of at the first sign-in."""
    try:
        parse_rate(value)
    except ValueError as error:
        raise ValueError(f"write a rate like '10 per 15 minutes' ({error})") from None
    return value


class Settings(BaseSettings):
    """Read from the environment (prefix LORASTUDIO_), plus DATABASE_URL and REDIS_URL as is."""

    model_config = SettingsConfigDict(env_prefix="LORASTUDIO_", extra="ignore")

    data_dir: Path = Field(default_factory=_default_data_dir, description="Work folders, models, SQLite file.")
    database_url: str = Field(
        "", validation_alias="DATABASE_URL", description="SQLAlchemy URL; empty: SQLite in data_dir."
    )
    redis_url: str = Field("redis://127.0.0.1:6379/0", validation_alias="REDIS_URL", description="Broker and pub/sub.")
    queue: str = Field("training", description="Celery queue the training tasks go to.")
    short_queue: str = Field(
        "", description="Celery queue of short jobs (dataset analysis; evaluation and generation later), consumed by "
        "a worker slot of their own so they never wait behind a training run; empty: derived from `queue` "
        "(resolved_short_queue)."
    )
    access_log: bool = Field(False, description="Let `lorastudio up` print uvicorn's line per HTTP request.")
    calibrate: bool = Field(
        True, description="Measure a training worker's real throughput at its start (a few steps of a small model in "
        "a child process) so time estimates for it use that instead of a datasheet figure."
    )
    max_upload_bytes: int = Field(2 * 1024**3, description="Largest dataset upload.")
    # Dataset uploads (issue 16): bounds on what a file expands to, where it is spooled, and how many at once.
    dataset_max_rows: int = Field(10_000_000, ge=1, description="Most rows in one dataset file.")
    dataset_max_row_bytes: int = Field(
        16 * 1024**2, ge=1024, description="Largest row (a JSONL line, CSV record, JSON element, or a Parquet row once "
        "decompressed). Parquet's whole decoded size is held to max_upload_bytes, like the text formats' size."
    )
    upload_dir: Path | None = Field(
        None, description="Where uploads are spooled while they are checked; empty: data_dir/uploads. Left-overs of "
        "a killed process are removed at the next start."
    )
    max_concurrent_uploads: int = Field(
        2, ge=1, description="Uploads received and checked at once by one web process; more get 503 + Retry-After."
    )
    upload_retry_after_s: int = Field(10, ge=1, description="Retry-After given to an upload refused as busy.")
    visibility_timeout_s: int = Field(24 * 3600, description="Redis redelivery timeout; above the longest run.")
    cancel_grace_s: float = Field(30.0, description="Seconds between SIGTERM and SIGKILL when cancelling.")
    lost_after_s: float = Field(
        30.0, description="A running run whose heartbeat (every 2 s) is older than this lost its worker: it is queued "
        "again to resume from its newest checkpoint on another worker, or failed after max_attempts."
    )
    max_attempts: int = Field(
        3, ge=1, description="How many times a run may be started: one whose worker dies each time (out of memory, "
        "say) then fails with worker_lost instead of trying forever."
    )
    db_outage_s: float = Field(
        300.0, gt=0, description="How long a worker keeps retrying (with backoff) a running job's database writes "
        "while the database is unreachable (restarted, failing over); its child keeps working and its reports wait "
        "in memory meanwhile. After that the attempt stops, and the run resumes from its newest checkpoint once "
        "the database is back."
    )
    # Holding under load (issue 16): the web process's connections, threads and live streams.
    db_pool_size: int = Field(
        20, ge=1, le=1000, description="Pooled database connections per process (plus 10 in reserve for probes and "
        "downloads). In the web process it is also how many requests may do database work at once: the others "
        "wait in line (no thread, no connection held) up to db_wait_s. PostgreSQL: keep (web processes x "
        "(db_pool_size + 10)) + workers under its max_connections."
    )
    db_wait_s: float = Field(
        10.0, gt=0, le=600, description="How long a web request waits for a free database connection before a 503 "
        "with Retry-After (instead of hanging, or a 500)."
    )
    web_threads: int = Field(
        40, ge=1, le=1000, description="Worker threads of the web process for its synchronous routes; keep it at "
        "least db_pool_size so every connection can be busy (more helps only routes that need no database)."
    )
    sse_max_clients: int = Field(
        1000, ge=1, description="Live-update streams (/api/runs/{id}/events) one web process serves at once; "
        "beyond: 503 with Retry-After."
    )
    sse_max_clients_per_user: int = Field(
        50, ge=1, description="Live-update streams one user may hold open at once per web process; beyond: 429."
    )
    sse_keepalive_s: float = Field(
        15.0, gt=0, le=300, description="Seconds between keep-alive comments of an idle live-update stream."
    )
    trainer_allocator: Literal["auto", "tcmalloc", "jemalloc", "system"] = Field(
        "auto", description="Heap allocator of trainer processes: auto (tcmalloc, else jemalloc, where installed), "
        "tcmalloc, jemalloc or system. tcmalloc trained 10-25 % faster in ~25 % less memory on the CPU."
    )
    session_days: float = Field(14.0, gt=0, description="How long a browser stays signed in after logging in.")
    admin_password: str = Field("", description="The first admin's password on a fresh studio; empty: generated.")
    # Sign-in guards: failed sign-ins are counted in Redis (keys named after the database, so every web process of
    # one studio shares them) in the `limits` notation "N per [K] second|minute|hour"; refused with 429 and
    # Retry-After until the window moves on. A success clears its account's count.
    login_failures_per_account: Annotated[str, AfterValidator(_rate_limit)] = Field(
        "10 per 15 minutes", description="Failed sign-ins allowed per account before it is refused for a while."
    )
    login_failures_per_client: Annotated[str, AfterValidator(_rate_limit)] = Field(
        "30 per 15 minutes", description="Failed sign-ins allowed per client address (any accounts) before it is "
        "refused for a while; behind a proxy, let uvicorn trust its X-Forwarded-For (--forwarded-allow-ips)."
    )
    login_hash_slots: int = Field(
        2, ge=1, le=64, description="Passwords checked at once per web process (argon2id takes ~64 MiB and a core "
        "for ~50 ms each); further sign-ins wait for a slot."
    )
    login_wait_s: float = Field(
        5.0, gt=0, le=60, description="How long a sign-in waits for a free slot before it is answered 503 with "
        "Retry-After."
    )
    # Fairness: per-user quotas (an admin sets a user's own with `lorastudio users set-quota`; these are the
    # defaults of users without one) and run priorities. 0: no limit.
    quota_queued_runs: int = Field(
        0, ge=0, description="Default most runs one user may have queued at once; more are refused (409). 0: no limit."
    )
    quota_running_runs: int = Field(
        0, ge=0, description="Default most runs of one user training at once; the rest wait their turn while other "
        "users' runs start. 0: no limit."
    )
    quota_storage_bytes: int = Field(
        0, ge=0, description="Default bytes one user may store (datasets, adapters, checkpoints); an upload or a run "
        "beyond it is refused. 0: no limit."
    )
    max_run_priority: int = Field(
        100, ge=0, description="Run priorities go from -max_run_priority to +max_run_priority (higher starts first); "
        "users may lower their own below 0, only admins raise one above 0."
    )
    # Pasted and uploaded run specs (the designer's YAML import, `lorastudio runs create`/`train` spec files): read
    # with worker.planning.safe_yaml, which also refuses anchors/aliases, tags and deep nesting before building them.
    max_spec_yaml_bytes: int = Field(
        64 * 1024, ge=1024, le=16 * 1024**2,
        description="Largest YAML run spec read (a spec is a few hundred bytes); a larger one is refused unread.",
    )
    # The generation service (python -m worker.generation): base models kept loaded, adapters applied per request.
    generation_backend: Literal["transformers", "vllm"] = Field(
        "transformers", description="How the generation service generates: 'transformers' (PEFT adapters, one "
        "decoding loop batching requests for several adapters and the base; CPU or GPU) or 'vllm' (CUDA, where "
        "installed; the service refuses to start when it is not importable)."
    )
    generation_namespace: str = Field(
        "lorastudio:gen", pattern=r"^[A-Za-z0-9:_-]{1,100}$", description="Prefix of the generation service's "
        "Redis keys (its request list and presence): studios sharing one Redis give each its own."
    )
    generation_max_batch: int = Field(
        8, ge=1, le=256, description="Most requests for one base model decoded together in one batch; requests "
        "arriving while a batch runs join the next one."
    )
    generation_adapters_per_base: int = Field(
        8, ge=1, le=1024, description="Adapters kept loaded per base model; beyond it the least recently used is "
        "unloaded (and loaded again from the service's cache when asked for)."
    )
    generation_base_memory_bytes: int = Field(
        16 * 1024**3, ge=0, description="Memory the generation service's loaded base models may take together; "
        "loading one more past it unloads the least recently used first (one base is always allowed)."
    )
    # The web's side of generation (/v1, app.core.generation.client): how long it waits on the service.
    generation_start_timeout_s: float = Field(
        120.0, gt=0, le=3600, description="How long the web waits for a generation's first event (the service may "
        "first load the base model) before answering 504 and withdrawing the request."
    )
    generation_idle_timeout_s: float = Field(
        60.0, gt=0, le=3600, description="How long the web waits between two events of a generation under way "
        "before it gives up on it (504, or an error event in a stream) and cancels it."
    )
    openai_max_body_bytes: int = Field(
        4 * 1024**2, ge=1024, le=256 * 1024**2, description="Largest request body of the OpenAI-compatible routes "
        "(/v1); a larger one is refused (413) unread."
    )
    # Evaluation's LLM-as-judge scorer: an OpenAI-compatible chat endpoint the admin configures (none: no judge).
    judge_base_url: str | None = Field(
        None, description="Base URL of the OpenAI-compatible endpoint the judge scorer calls (…/v1; it POSTs "
        "chat/completions there). Unset: evaluations cannot use the judge scorer."
    )
    judge_api_key: str = Field("", description="Bearer token sent to the judge endpoint (empty: none sent).")
    judge_model: str = Field("", description="The model name sent to the judge endpoint.")
    judge_timeout_s: float = Field(
        60.0, gt=0, le=600, description="How long one judge call may take; past it the evaluation fails, naming "
        "the endpoint."
    )
    # Where blobs' bytes live (docs/ARCHITECTURE.md, "Large blobs in an object store"). The database always keeps
    # their metadata; with "s3", blobs of blob_s3_min_bytes and more keep their bytes in an S3-compatible bucket.
    blob_store: Literal["database", "s3"] = Field(
        "database", description="Where new large blobs' bytes go: 'database' (chunks in the database, the default) or "
        "'s3' (an S3-compatible object store: AWS S3, MinIO, …; the s3_* settings). Blobs already in the bucket stay "
        "readable while s3_bucket is set, whichever this says."
    )
    blob_s3_min_bytes: int = Field(
        8 * 1024**2, ge=1, description="With blob_store 's3': blobs at least this big go to the bucket; smaller ones "
        "(configs, dataset indexes) stay in the database, where a read is one query."
    )
    s3_bucket: str = Field("", description="The bucket of the object store (it must exist); empty: none is used.")
    s3_endpoint_url: str | None = Field(
        None, description="The S3 API's URL (MinIO: http://minio:9000); unset: AWS S3 in s3_region."
    )
    s3_region: str = Field("us-east-1", description="The bucket's region (MinIO accepts any).")
    s3_access_key_id: str = Field(
        "", description="Access key; empty: boto3's own chain (AWS_* variables, a shared profile, an instance role)."
    )
    s3_secret_access_key: SecretStr = Field(SecretStr(""), description="Secret of s3_access_key_id.")
    s3_prefix: str = Field(
        "", pattern=r"^([A-Za-z0-9._-]+/)*$", description="Key prefix of this studio's objects (e.g. 'studio-a/'), "
        "so studios can share a bucket; empty or ending in '/'."
    )

    @model_validator(mode="after")
    def check_object_store(self) -> Settings:
        """blob_store 's3' without a bucket is refused at start, not at the first large upload."""
        if self.blob_store == "s3" and not self.s3_bucket:
            raise ValueError("blob_store 's3' needs s3_bucket (LORASTUDIO_S3_BUCKET)")
        return self

    @property
    def resolved_database_url(self) -> str:
        """DATABASE_URL, or the embedded SQLite file in the data directory."""
        return self.database_url or f"sqlite:///{self.data_dir / 'studio.db'}"

    @property
    def resolved_short_queue(self) -> str:
        """short_queue, else `short` beside a training queue named training…, else QUEUE.short (a test's own)."""
        if self.short_queue:
            return self.short_queue
        return "short" if self.queue.startswith("training") else f"{self.queue}.short"

    @property
    def work_dir(self) -> Path:
        """Scratch space for runs (datasets exported for the trainer, trainer output)."""
        return self.data_dir / "work"

    @property
    def models_dir(self) -> Path:
        """Where prepared base models (e.g. the converted demo model) live."""
        return self.data_dir / "models"


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
