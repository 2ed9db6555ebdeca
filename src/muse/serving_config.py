"""The serving sections of ``muse.yaml``: ``auth``, ``lake`` and ``server``.

Kept apart from :mod:`muse.config` (which validates and loads them with the rest) because
only a running service reads them; the scoring core and offline tools ignore them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["AuthConfig", "LakeConfig", "ServerConfig", "hash_api_key"]

_HASH = re.compile(r"^sha256:[0-9a-f]{64}$")


def hash_api_key(key: str) -> str:
    """How API keys are stored: ``sha256:<hex>`` of the key.

    API keys are long random tokens (``muse auth new-key``), not passwords, so a plain
    SHA-256 suffices to keep them out of config files and logs; a slow password hash would
    only add latency to every request.
    """
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_hashes(hashes: tuple[str, ...]) -> tuple[str, ...]:
    for h in hashes:
        if not _HASH.match(h):
            # The value may be a plain key pasted by mistake: never echo any of it.
            raise ValueError(
                "API keys are stored hashed as 'sha256:<64 hex digits>', got a value that is "
                "not such a hash; never put a plain key in config (hash one with "
                "`muse auth hash-key`)"
            )
    return hashes


class AuthConfig(_Strict):
    """API keys, stored hashed. A tenant's key authenticates exactly that tenant."""

    tenants: Mapping[str, tuple[str, ...]] = Field(
        default_factory=dict, description="Tenant → hashes of its API keys."
    )
    admins: tuple[str, ...] = Field(default=(), description="Hashes of admin API keys.")
    secrets_file: str | None = Field(
        None,
        description="YAML file with the same `tenants` / `admins` keys, relative to the config; "
        "merged with the keys given here.",
    )

    @field_validator("tenants")
    @classmethod
    def _tenant_hashes(cls, v: Mapping[str, tuple[str, ...]]) -> Mapping[str, tuple[str, ...]]:
        for hashes in v.values():
            _check_hashes(hashes)
        return v

    @field_validator("admins")
    @classmethod
    def _admin_hashes(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return _check_hashes(v)


class LakeConfig(_Strict):
    """Where and how the score lake is written (Parquet, partitioned by date and predictor)."""

    url: str = Field(min_length=1, description="Folder (relative to the config) or fsspec URL.")
    flush_interval_s: float = Field(5.0, gt=0, le=3600, description="Longest a row waits.")
    max_rows_per_file: int = Field(100_000, ge=1, description="Rows that trigger a flush.")
    max_pending_rows: int = Field(
        200_000,
        ge=1,
        description="Rows held in memory at most; beyond, rows are dropped and counted.",
    )
    retry_for_s: float = Field(
        60.0,
        ge=0,
        le=86_400,
        allow_inf_nan=False,
        description="A file that cannot be written is retried while the sink has been "
        "failing for less than this; after, its rows are counted lost (0: never retried).",
    )


class ServerConfig(_Strict):
    """Limits and behaviour of the HTTP service."""

    max_body_bytes: int = Field(1 << 20, ge=1024, description="Larger bodies get HTTP 413.")
    max_batch_events: int = Field(10_000, ge=1, description="Events per batch request at most.")
    shadow_queue: int = Field(
        1_000,
        ge=1,
        description="Batches of shadow work waiting at most (in each lane: the shadow thread, "
        "the event loop); more are shed (counted).",
    )
    warmup_events: int = Field(
        64, ge=0, description="Synthetic events scored per predictor before turning ready."
    )
    watch_config: bool = Field(False, description="Reload when the config file changes.")
    request_budget_ms: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description="Latency budget of a scoring request: calls to remote (kserve-v2) models "
        "get at most what remains of it (None: each model's own timeout_ms only).",
    )
    map_tolerance: float = Field(
        0.002,
        ge=0,
        lt=0.1,
        allow_inf_nan=False,
        description="Tenant maps are served thinned: knots are dropped as long as no alert "
        "rate the map implies moves by more than this share of itself (0.002: 1 % stays "
        "within 0.998–1.002 %); 0 serves every knot. Artifacts are not changed.",
    )
    drain_s: float = Field(
        10.0,
        ge=0,
        le=300,
        allow_inf_nan=False,
        description="On SIGTERM, how long at most the server keeps serving while not ready, "
        "so load balancers stop sending before it stops accepting: it stops as soon as no "
        "scoring request arrived for 0.5 s (a rolling restart fails no request).",
    )
    remote_ready_timeout_s: float = Field(
        60.0,
        gt=0,
        allow_inf_nan=False,
        description="How long startup (and a reload) waits for every remote (kserve-v2) "
        "model to answer ready before giving up.",
    )


AuthSetting = Literal["none"] | AuthConfig
