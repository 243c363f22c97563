"""One settings class, read once from the environment (prefix ``IRIS_``) and validated at start."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Backend(StrEnum):
    """Which family of adapters the composition root builds."""

    LOCAL = "local"
    AWS = "aws"


class ToolStoreKind(StrEnum):
    SQLITE = "sqlite"
    POSTGRES = "postgres"


class Settings(BaseSettings):
    """Every limit of CONTRACT.md is a field here; defaults are the contract's."""

    model_config = SettingsConfigDict(env_prefix="IRIS_", extra="ignore", frozen=True)

    backend: Backend = Backend.LOCAL

    # Limits (CONTRACT.md, "Limits").
    max_code_bytes: int = Field(100 * 1024, ge=1)
    max_context_bytes: int = Field(64 * 1024, ge=2)
    execution_timeout_s: float = Field(300.0, gt=0)
    sandbox_memory_mb: int = Field(2048, ge=64)
    output_limit_bytes: int = Field(1024 * 1024, ge=1024)
    sandbox_max_processes: int = Field(256, ge=8)
    sandbox_idle_timeout_s: float = Field(300.0, gt=0)
    sandbox_max_lifetime_s: float = Field(3600.0, gt=0)
    max_sandboxes_per_project: int = Field(10, ge=1)
    rate_limit_per_minute: int = Field(100, ge=1)

    # Local mode.
    data_dir: Path = Path(".iris")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    sandbox_disk_mb: int = Field(512, ge=8)
    sandbox_cpus: float = Field(1.0, gt=0)
    sandbox_warm_pool: int = Field(1, ge=0, le=16)
    # Host uid/gid the jails run as when the server runs as root (never root itself).
    sandbox_host_uid: int = Field(1_999_999, ge=1)
    node_path: str | None = None
    reaper_interval_s: float = Field(5.0, gt=0)

    # HTTP edge.
    cors_origins: str = "*"

    # IRIS tools.
    #: Where tool records live: the local SQLite file, or PostgreSQL (Supabase).
    tool_store: ToolStoreKind = ToolStoreKind.SQLITE
    #: PostgreSQL connection string (Supabase: the pooled one works), for tool_store=postgres.
    database_url: SecretStr | None = None
    #: Key signing per-execution tool tokens (32+ bytes). Local mode makes one in the data
    #: directory when unset; on AWS it comes from Secrets Manager.
    token_signing_key: SecretStr | None = None

    @property
    def database_path(self) -> Path:
        """The one SQLite file of local mode."""
        return self.data_dir / "iris.db"

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]
