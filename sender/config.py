"""Typed settings read once from ``SENDER_*`` environment variables.

Every process builds one :class:`Settings` at start (``load_settings``) and passes it down;
nothing deeper re-reads ``os.environ``. A bad value stops the process with one line that names
the variable (``SettingsError``), never a traceback.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AnyHttpUrl,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from sender.errors import SettingsError

PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]


class Settings(BaseSettings):
    """All configuration of the api, the daemon and the CLI."""

    model_config = SettingsConfigDict(
        env_prefix="SENDER_",
        extra="ignore",
        frozen=True,
        validate_default=True,
    )

    # Services. None means "use the embedded default" (development commands start it).
    database_url: str | None = None
    redis_url: str | None = None
    #: Prefix for every Redis key this process writes (queues, limiter, rate limits), so
    #: tests and several deployments can share one Redis.
    redis_prefix: str = "sender"

    # Provider.
    mitto_base_url: AnyHttpUrl = AnyHttpUrl("https://rest.mittoapi.net")
    mitto_api_key: str = "dev-key"
    mitto_connect_timeout_s: PositiveFloat = 3.0
    mitto_read_timeout_s: PositiveFloat = 10.0
    mitto_bulk_max: Annotated[int, Field(gt=0, le=10_000)] = 1000
    #: aiohttp connector limits: hundreds of concurrent requests to one host.
    http_pool_limit: PositiveInt = 1000
    http_pool_limit_per_host: PositiveInt = 1000

    # Control plane.
    admin_token: str = "dev-admin-token"
    public_base_url: AnyHttpUrl = AnyHttpUrl("http://127.0.0.1:8080")
    api_host: str = "127.0.0.1"
    api_port: Annotated[int, Field(gt=0, lt=65536)] = 8080
    max_body_bytes: PositiveInt = 50 * 1024 * 1024
    max_json_body_bytes: PositiveInt = 1024 * 1024
    send_rate_limit_per_min: PositiveInt = 5
    api_rate_limit_per_min: PositiveInt = 1200
    short_link_length: Annotated[int, Field(ge=4, le=32)] = 8

    # Send pipeline.
    provider_rate: PositiveFloat = 500.0
    provider_burst: PositiveInt = 50
    limiter: Literal["local", "redis"] = "local"
    max_in_flight: PositiveInt = 200
    batch_size: PositiveInt = 5000
    claim_chunk_size: PositiveInt = 200
    # Recipients claimed but not yet answered, as a multiple of max_in_flight: claims run
    # ahead of the requests on the wire so the next chunks are ready (benchmarks/README.md has
    # the curve). A crash can leave up to max_in_flight x claim_window recipients `unknown`.
    claim_window: Annotated[float, Field(ge=1.0, le=8.0)] = 2.0
    max_segments: Annotated[int, Field(gt=0, le=50)] = 10
    max_attempts: PositiveInt = 5
    retry_base_s: PositiveFloat = 3.0
    retry_ambiguous: bool = False
    flush_interval_s: PositiveFloat = 0.1
    flush_max_rows: PositiveInt = 2000
    sending_lease_s: PositiveFloat = 120.0
    sweep_interval_s: PositiveFloat = 5.0
    shutdown_grace_s: PositiveFloat = 20.0

    # Webhooks in (delivery reports, inbound SMS).
    dlr_secret: str = "dev-dlr-secret"
    #: Signs tracked-link and unsubscribe codes so they cannot be guessed or forged.
    link_secret: str = "dev-link-secret"

    # Observability.
    metrics_port: Annotated[int, Field(ge=0, lt=65536)] = 9108
    #: False keeps the daemon's hot-path metric hooks idle (the overhead benchmark's baseline).
    metrics_enabled: bool = True
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgres://", "postgresql://")):
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis:// URL")
        return value

    @field_validator("admin_token", "dlr_secret", "link_secret", "mitto_api_key")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @model_validator(mode="after")
    def _check_pool(self) -> Settings:
        if self.http_pool_limit_per_host > self.http_pool_limit:
            raise ValueError("SENDER_HTTP_POOL_LIMIT_PER_HOST exceeds SENDER_HTTP_POOL_LIMIT")
        return self

    @property
    def mitto_url(self) -> str:
        """Base URL without a trailing slash."""
        return str(self.mitto_base_url).rstrip("/")

    @property
    def public_url(self) -> str:
        return str(self.public_base_url).rstrip("/")


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; raise ``SettingsError`` with one clear line."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = first["loc"]
        name = f"SENDER_{str(loc[0]).upper()}" if loc else "settings"
        raise SettingsError(f"invalid {name}: {first['msg']}") from None
