"""The Redis store against a real redis-server of the test's own: reads, failures, breaker.

Timings are bounds on what a dead store may cost, with wide margins (a shared 2-core VM);
recovery is polled with a deadline, never slept for.
"""

from __future__ import annotations

import time
from itertools import count

import numpy as np
import pytest

from muse.errors import FeatureStoreError
from muse.featurestore import RedisSource, RedisStore
from tests.e2e.support import wait_until
from tests.featurestore.fakes import Recorder
from tests.redis_server import RedisServer, hset_rows, wait_gone

_prefixes = count()


def prefix() -> str:
    """A key prefix of this test alone, so tests sharing a server never see each other's keys."""
    return f"t{next(_prefixes)}:card:"


def store(server: RedisServer, key_prefix: str, recorder: Recorder, **options: float) -> RedisStore:
    source = RedisSource(url=server.url, key_prefix=key_prefix, **options)  # type: ignore[arg-type]
    return RedisStore.connect(source, recorder)


def test_fetches_hash_fields_for_a_batch_in_request_order(redis_server: RedisServer) -> None:
    p = prefix()
    hset_rows(
        redis_server,
        p,
        {
            "c1": {"card_age_days": 10, "email_age_days": "100.5"},
            "c2": {"card_age_days": "2e1"},
            "bank1:c3": {"card_age_days": -3},
        },
    )
    recorder = Recorder()
    s = store(redis_server, p, recorder)
    try:
        got = s.fetch(
            [("c2",), ("missing",), ("c1",), ("bank1", "c3"), ("c1",)],
            ["email_age_days", "card_age_days"],
        )
    finally:
        s.close()
    np.testing.assert_array_equal(
        got,
        [[np.nan, 20.0], [np.nan, np.nan], [100.5, 10.0], [np.nan, -3.0], [100.5, 10.0]],
    )
    assert [kind for kind, _ in recorder.fetches] == ["redis"]
    assert recorder.failures == []
    assert s.description == f"redis redis://127.0.0.1:{redis_server.port}/0"


def test_unusable_values_are_absent_and_counted_never_served(redis_server: RedisServer) -> None:
    p = prefix()
    hset_rows(redis_server, p, {"c1": {"a": "abc", "b": "inf", "c": "1.5"}})
    client = redis_server.client()
    client.set(p + "c2", "a string, not a hash")  # WRONGTYPE for HMGET
    client.close()
    recorder = Recorder()
    s = store(redis_server, p, recorder)
    try:
        got = s.fetch([("c1",), ("c2",)], ["a", "b", "c"])
    finally:
        s.close()
    np.testing.assert_array_equal(got, [[np.nan, np.nan, 1.5], [np.nan, np.nan, np.nan]])
    assert recorder.reasons() == ["invalid_value"] * 3  # "abc", "inf", and the string key


def test_a_password_in_the_url_is_never_shown() -> None:
    source = RedisSource(url="redis://user:s3cret@127.0.0.1:1/2")
    s = RedisStore.connect(source)
    assert "s3cret" not in s.description
    assert "s3cret" not in repr(s)
    assert s.description == "redis redis://127.0.0.1:1/2"


def test_check_pings_and_names_the_store_when_it_does_not_answer(
    redis_server: RedisServer, own_redis: RedisServer
) -> None:
    store(redis_server, prefix(), Recorder()).check()
    dead = store(own_redis, prefix(), Recorder(), timeout_s=0.2)
    own_redis.kill()
    with pytest.raises(FeatureStoreError, match=f"127.0.0.1:{own_redis.port}.*PING"):
        dead.check()


def test_a_dead_store_fails_fast_through_the_breaker_and_recovers_by_itself(
    own_redis: RedisServer,
) -> None:
    p = prefix()
    hset_rows(own_redis, p, {"c1": {"f": 1.0}})
    recorder = Recorder()
    s = store(own_redis, p, recorder, failure_threshold=3, reset_timeout_s=0.3, timeout_s=0.2)
    assert s.fetch([("c1",)], ["f"])[0, 0] == 1.0
    own_redis.kill()
    wait_gone(own_redis)
    for _ in range(3):
        with pytest.raises(FeatureStoreError, match="unavailable"):
            s.fetch([("c1",)], ["f"])
    assert s.breaker.state == "open"
    started = time.perf_counter()
    for _ in range(100):
        with pytest.raises(FeatureStoreError, match="circuit open after 3"):
            s.fetch([("c1",)], ["f"])
    per_call = (time.perf_counter() - started) / 100
    assert per_call < 0.002  # no network: microseconds (generous bound for a shared VM)
    assert recorder.reasons() == ["unavailable"] * 3 + ["circuit_open"] * 100

    own_redis.start()  # same port, empty: Redis keeps nothing on disk here
    hset_rows(own_redis, p, {"c1": {"f": 2.0}})

    def recovered() -> bool:
        try:
            return bool(s.fetch([("c1",)], ["f"])[0, 0] == 2.0)
        except FeatureStoreError:
            return False

    wait_until(recovered, 10.0, "the breaker to probe the restarted store")
    assert s.breaker.state == "closed"
    s.close()


def test_a_hung_store_times_out_within_the_bound(own_redis: RedisServer) -> None:
    p = prefix()
    hset_rows(own_redis, p, {"c1": {"f": 1.0}})
    recorder = Recorder()
    s = store(own_redis, p, recorder, failure_threshold=2, reset_timeout_s=0.2, timeout_s=0.05)
    assert s.fetch([("c1",)], ["f"])[0, 0] == 1.0  # a pooled connection now exists
    own_redis.pause()
    try:
        started = time.perf_counter()
        with pytest.raises(FeatureStoreError, match="timeout"):
            s.fetch([("c1",)], ["f"])
        assert time.perf_counter() - started < 1.0  # 50 ms timeout, no retries
        with pytest.raises(FeatureStoreError):
            s.fetch([("c1",)], ["f"])
        assert s.breaker.state == "open"
    finally:
        own_redis.resume()
    wait_until(lambda: s.breaker.state == "half_open", 5.0, "the cool-down to end")
    assert s.fetch([("c1",)], ["f"])[0, 0] == 1.0  # the probe succeeds: closed again
    assert s.breaker.state == "closed"
    assert recorder.reasons()[0] == "timeout"
    s.close()


def test_a_restart_between_batches_costs_no_failure(
    own_redis: RedisServer,
) -> None:
    p = prefix()
    recorder = Recorder()
    s = store(own_redis, p, recorder, timeout_s=0.5)
    hset_rows(own_redis, p, {"c1": {"f": 1.0}})
    assert s.fetch([("c1",)], ["f"])[0, 0] == 1.0
    own_redis.kill()
    wait_gone(own_redis)
    own_redis.start()
    hset_rows(own_redis, p, {"c1": {"f": 3.0}})
    assert s.fetch([("c1",)], ["f"])[0, 0] == 3.0  # on a fresh connection, no failure seen
    assert recorder.failures == []
    assert s.breaker.failures == 0
    s.close()
