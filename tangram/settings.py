"""Settings: one registry of name, default and help, read from ``TANGRAM_*`` variables.

Lives at the package root (not in ``platform``) because engines read a few of
them (time zone, file storage) too; ``tangram.platform.settings`` re-exports it.
"""

from __future__ import annotations

import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TANGRAM_", extra="ignore")

    database_url: str = Field(
        "", description="SQLAlchemy URL; postgresql://… URLs use the psycopg 3 driver. "
        "Default: an SQLite file tangram.db in the var folder.",
    )
    environment: str = Field("development", description="development | production")
    secret_key: str = Field(
        "", description="Signs session cookies. Required in production; in development a "
        "random key is generated and kept in var/secret_key.",
    )
    var_dir: Path = Field(Path("./var"), description="Writable folder for the SQLite file, "
                          "uploaded files and generated keys.")
    files_dir: Path | None = Field(None, description="Where attachments are stored "
                                   "(default: <var_dir>/files).")
    timezone: str = Field("Asia/Shanghai", description="Organization time zone (date "
                          "buckets, schedules, today() in expressions).")
    default_language: str = Field("zh", description="Language of messages when the client "
                                  "sends no Accept-Language (zh or en).")
    session_hours: int = Field(12, description="Lifetime of a login session / bearer token.")
    login_max_failures: int = Field(5, description="Failed sign-ins of one username that "
                                    "lock it (within login_lockout_minutes).")
    login_lockout_minutes: int = Field(15, description="How long a locked username stays "
                                       "locked, and the window failures are counted in.")
    login_ip_max_failures: int = Field(30, description="Failed sign-ins from one client "
                                       "address (any usernames) that block the address "
                                       "(within login_ip_lockout_minutes); 0 turns it off.")
    login_ip_lockout_minutes: int = Field(15, description="How long a blocked client "
                                          "address stays blocked, and the window its "
                                          "failures are counted in.")
    cookie_secure: bool = Field(False, description="Mark the session cookie Secure (HTTPS).")
    max_upload_mb: int = Field(50, description="Largest accepted upload, in MiB.")
    in_process_worker: bool = Field(True, description="`tangram serve` also runs the worker.")
    host: str = Field("127.0.0.1", description="Address `tangram serve` binds.")
    port: int = Field(8000, description="Port `tangram serve` binds.")
    smtp_host: str = Field("", description="Mail server for email notifications (empty: "
                           "email is off).")
    smtp_port: int = Field(25, description="Mail server port (587 for STARTTLS, 465 for SSL).")
    smtp_user: str = Field("", description="Mail server user name (empty: no login).")
    smtp_password: str = Field("", description="Mail server password.")
    smtp_from: str = Field("tangram@localhost", description="Sender address of emails.")
    smtp_tls: Literal["none", "starttls", "ssl"] = Field(
        "none", description="none | starttls | ssl")

    @field_validator("environment")
    @classmethod
    def _known_environment(cls, value: str) -> str:
        if value not in {"development", "production", "test"}:
            raise ValueError("environment must be development, production or test")
        return value

    @model_validator(mode="after")
    def _default_database(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{self.var_dir / 'tangram.db'}"
        return self

    @property
    def files_path(self) -> Path:
        return self.files_dir or self.var_dir / "files"

    def resolved_secret_key(self) -> str:
        """The configured secret; refuses to run production on a generated one."""
        if self.secret_key:
            if len(self.secret_key) < 32:
                raise RuntimeError("TANGRAM_SECRET_KEY must be at least 32 characters")
            return self.secret_key
        if self.environment == "production":
            raise RuntimeError("TANGRAM_SECRET_KEY must be set in production")
        key_file = self.var_dir / "secret_key"
        if key_file.exists():
            return key_file.read_text().strip()
        self.var_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        key_file.write_text(key)
        key_file.chmod(0o600)
        return key


@lru_cache
def get_settings() -> Settings:
    return Settings()
