"""lists' own settings from the environment (prefix ``QMESH_``), parsed once in ``app``."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class ListsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QMESH_", frozen=True, extra="ignore")

    lists_unsubscribe_url: str | None = None  # RFC 8058 one-click base URL, when one is served
    lists_timer_seconds: float = 300.0  # how often quiet digests and held posts are looked at
