"""Infrastructure settings from the environment, prefix ``QMESH_`` (ARCHITECTURE section 6).

Parsed once in ``__main__`` and passed down frozen. qmail's own variables (``DATABYTES``,
``QMAILDEFAULTDOMAIN`` ...) belong to the control loader, not here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from qmesh.dns.servers import parse_servers

PLACEHOLDER_SECRETS = {"changeme", "changethis", "secret", "password"}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QMESH_", frozen=True, extra="ignore")

    nats_url: str = "nats://127.0.0.1:4222"
    nats_creds: Path | None = None
    nats_user: str | None = None
    nats_password_file: Path | None = None
    js_replicas: int = Field(default=1, ge=1, le=5)

    store: str = "s3"
    s3_endpoint: str = "127.0.0.1:9000"
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    s3_access_key_file: Path | None = None
    s3_secret_key_file: Path | None = None
    s3_secure: bool = False
    s3_region: str | None = None
    queue_bucket: str = "qmesh-queue"
    mail_bucket: str = "qmesh-mail"

    control: Path = Path("/etc/qmesh/control")
    data: Path = Path("./qmesh-data")

    listen_host: str = "0.0.0.0"
    http_host: str = "0.0.0.0"
    http_port: int = Field(default=8080, ge=0, le=65535)
    smtp_port: int = Field(default=2525, ge=0, le=65535)
    submission_port: int = Field(default=2587, ge=0, le=65535)
    smtps_port: int = Field(default=2465, ge=0, le=65535)
    qmtp_port: int = Field(default=2209, ge=0, le=65535)
    pop3_port: int = Field(default=2110, ge=0, le=65535)
    pop3s_port: int = Field(default=2995, ge=0, le=65535)
    imap_port: int = Field(default=2143, ge=0, le=65535)  # imapd (#13)
    imaps_port: int = Field(default=2993, ge=0, le=65535)
    # concurrent sessions per listener (SMTPD-73, tcpserver -c); more wait in the backlog
    max_sessions: int = Field(default=500, ge=1)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # resolvers every service asks: comma-separated host or host:port; empty: the system's
    dns_servers: str = ""
    # CAs remote trusts besides the system's, for MTA-STS policy hosts and MX certificates
    tls_ca_file: Path | None = None
    # the ports remote connects to on other domains' MX hosts (SMTP) and MTA-STS policy hosts
    # (HTTPS); only a test world on loopback, which cannot bind 25 and 443, changes them
    remote_smtp_port: int = Field(default=25, ge=1, le=65535)
    remote_https_port: int = Field(default=443, ge=1, le=65535)

    @field_validator("store")
    @classmethod
    def _store_kind(cls, value: str) -> str:
        if value != "s3" and not value.startswith("file://"):
            raise ValueError("QMESH_STORE must be 's3' or 'file:///path'")
        return value

    @field_validator("dns_servers")
    @classmethod
    def _dns_servers(cls, value: str) -> str:
        parse_servers(value)  # a bad entry stops startup with its name
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    def store_path(self) -> Path:
        """The directory of the local store (``QMESH_STORE=file:///path``)."""
        return Path(self.store.removeprefix("file://"))

    def s3_credentials(self) -> tuple[str, str]:
        access = _secret(self.s3_access_key, self.s3_access_key_file, "S3 access key")
        secret = _secret(self.s3_secret_key, self.s3_secret_key_file, "S3 secret key")
        return access, secret

    def nats_password(self) -> str | None:
        if self.nats_password_file is None:
            return None
        return self.nats_password_file.read_text().strip()


def _secret(value: str | None, path: Path | None, what: str) -> str:
    if path is not None:
        value = path.read_text().strip()
    if not value:
        raise ValueError(
            f"{what} is not set (QMESH_S3_ACCESS_KEY[_FILE] / QMESH_S3_SECRET_KEY[_FILE])"
        )
    if value.lower() in PLACEHOLDER_SECRETS:
        raise ValueError(f"{what} is a placeholder; set a real one")
    return value
