"""The production feature store: a Redis server holding one hash per entity.

Layout: the hash ``<key_prefix><part1>[:<part2>…]`` has one field per feature, its value a
decimal number (``HSET card:card-00002 card_age_days 476 email_age_days 274``). A batch is
one pipelined round trip of ``HMGET`` — one per distinct entity — written as a single
packed request, which costs about half of redis-py's ``Pipeline`` object per command.

Failures never hang a request: connecting and every read are bounded by ``timeout_s``,
redis-py's own retries are off (its pool already replaces, on checkout, connections a
restarted server closed), and a :class:`CircuitBreaker`
turns a dead server into an immediate :class:`~muse.errors.FeatureStoreError` until its
half-open probe finds the server back. A value that is not a finite number is treated as
absent for that entity and counted (``invalid_value``), never served.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from muse.errors import FeatureStoreError
from muse.featurestore.base import NO_OBSERVER, EntityId, StoreObserver
from muse.featurestore.spec import RedisSource
from muse.resilience import CircuitBreaker
from muse.types import FeatureMatrix

__all__ = ["RedisStore", "redis_description"]


class RedisStore:
    """Lookups in Redis through an injected client (a ``redis.Redis``): see the module doc."""

    kind = "redis"
    __slots__ = ("_breaker", "_client", "_description", "_observer", "_prefix", "_redis")

    def __init__(
        self,
        client: Any,
        *,
        key_prefix: str = "",
        breaker: CircuitBreaker | None = None,
        description: str = "redis",
        observer: StoreObserver = NO_OBSERVER,
    ) -> None:
        self._redis = _import_redis()
        self._client = client
        self._prefix = key_prefix
        self._breaker = breaker if breaker is not None else CircuitBreaker()
        self._description = description
        self._observer = observer

    @classmethod
    def connect(cls, source: RedisSource, observer: StoreObserver = NO_OBSERVER) -> RedisStore:
        """A store for ``source``. No I/O: redis-py connects on first use (see :meth:`check`)."""
        redis = _import_redis()
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        client = redis.Redis.from_url(
            source.url,
            socket_timeout=source.timeout_s,
            socket_connect_timeout=source.timeout_s,
            # Retrying is the breaker's job; redis-py's default (3 retries with backoff)
            # would multiply a timeout on the request path.
            retry=Retry(NoBackoff(), 0),
            max_connections=source.max_connections,
            health_check_interval=0,
        )
        breaker = CircuitBreaker(source.failure_threshold, source.reset_timeout_s)
        return cls(
            client,
            key_prefix=source.key_prefix,
            breaker=breaker,
            description=redis_description(source.url),
            observer=observer,
        )

    @property
    def description(self) -> str:
        return self._description

    @property
    def breaker(self) -> CircuitBreaker:
        return self._breaker

    def fetch(self, entities: Sequence[EntityId], features: Sequence[str]) -> FeatureMatrix:
        if not self._breaker.allow():
            self._observer.failed(self.kind, "circuit_open")
            raise FeatureStoreError(
                f"{self._description} is not answering: circuit open after "
                f"{self._breaker.failures} consecutive failures (next probe within "
                f"{self._breaker.reset_timeout_s:g} s)",
                store=self._description,
                features=features,
            )
        names = [self._prefix + ":".join(e) for e in entities]
        started = time.perf_counter()
        try:
            replies = self._hmget(names, features)
        except self._redis.RedisError as e:
            self._breaker.record_failure()
            reason = _reason(self._redis, e)
            self._observer.failed(self.kind, reason)
            raise FeatureStoreError(
                f"{self._description} failed ({reason}): {e}",
                store=self._description,
                features=features,
            ) from e
        self._breaker.record_success()
        self._observer.fetched(self.kind, time.perf_counter() - started)
        return self._parse(replies, len(features))

    def check(self) -> None:
        """PING the server; raise :class:`~muse.errors.FeatureStoreError` if it does not answer."""
        try:
            self._client.ping()
        except self._redis.RedisError as e:
            raise FeatureStoreError(
                f"the feature store {self._description} does not answer a PING "
                f"({_reason(self._redis, e)}: {e}); start it, or fix feature_store.redis.url",
                store=self._description,
            ) from e

    def close(self) -> None:
        self._client.close()

    # -- internals ------------------------------------------------------------------------

    def _hmget(self, names: list[str], features: Sequence[str]) -> list[Any]:
        """One packed pipeline of HMGET: a single write, then one reply per entity."""
        commands = [("HMGET", name, *features) for name in names]
        pool = self._client.connection_pool
        # The pool replaces a connection the server closed (e.g. it restarted) on checkout.
        conn = pool.get_connection()
        try:
            conn.send_packed_command(conn.pack_commands(commands))
            replies: list[Any] = []
            for _ in commands:
                try:
                    replies.append(conn.read_response())
                except self._redis.ResponseError as e:  # e.g. WRONGTYPE: not a hash
                    replies.append(e)
            return replies
        except BaseException:
            # Never hand a connection with unread replies back to the pool.
            conn.disconnect()
            raise
        finally:
            pool.release(conn)

    def _parse(self, replies: list[Any], n_features: int) -> FeatureMatrix:
        flat: list[bytes] = []
        invalid = 0
        for reply in replies:
            if isinstance(reply, Exception):
                invalid += 1
                flat.extend([b"nan"] * n_features)
            else:
                flat.extend(b"nan" if v is None else v for v in reply)
        try:
            values = np.array(flat, dtype=np.bytes_).astype(np.float64)
        except ValueError:  # some value is not a number: parse cell by cell
            values = np.array([_number(v) for v in flat], dtype=np.float64)
            invalid += int(np.isnan(values).sum()) - flat.count(b"nan")
        infinite = np.isinf(values)
        if infinite.any():
            invalid += int(infinite.sum())
            values[infinite] = np.nan
        for _ in range(invalid):
            self._observer.failed(self.kind, "invalid_value")
        out: FeatureMatrix = values.reshape(len(replies), n_features)
        return out

    def __repr__(self) -> str:
        return f"RedisStore({self._description!r}, prefix={self._prefix!r}, {self._breaker!r})"


def redis_description(url: str) -> str:
    """``redis://host:port/db`` without any password, for logs and errors."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return "redis " + urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _number(v: bytes) -> float:
    try:
        return float(v)
    except ValueError:
        return float("nan")


def _reason(redis: Any, e: BaseException) -> str:
    if isinstance(e, redis.TimeoutError):
        return "timeout"
    if isinstance(e, redis.ConnectionError):
        return "unavailable"
    return "error"


def _import_redis() -> Any:
    try:
        import redis
    except ImportError as e:  # pragma: no cover - redis is a dependency of muse-serve
        raise FeatureStoreError(
            f"the Redis client cannot be imported ({e}); install muse-serve with its "
            "dependencies (redis>=6)"
        ) from e
    return redis
