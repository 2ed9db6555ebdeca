"""The HTTP API fuzzed from its own schema, against a started ``muse serve`` with keys on.

Schemathesis (``tests/e2e/fuzzing.py``) reads ``/openapi.json`` and sends ~1,500 generated
requests, seeded (half a minute; ``benchmarks/fuzz_api.py`` is the long run): examples, boundary values and every negative variant the
schema allows (wrong types, missing and extra fields, too-long strings, wrong content
types, unsupported methods, missing or wrong keys), then random valid and invalid bodies.
Pass = Schemathesis finds nothing (no 5xx, every status and body as documented, valid
data accepted, invalid data refused) — and the server is still ready afterwards, with no
traceback in its log. What a schema-driven generator does not produce — bodies that are
not JSON at all, duplicate keys, numbers JSON has no float for — is fuzzed here with
Hypothesis on raw bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e.fuzzing import run_schemathesis, write_config
from tests.e2e.support import SAMPLE, Deployment, MuseProcess
from tests.e2e.test_auth import ADMIN_KEY, BANK1_KEY, bearer, with_keys

SEED = 20261205
#: Cards the quickstart's feature store knows (card-00000 … card-04999).
CARDS = [f"card-{i:05d}" for i in range(0, 5000, 250)]


@dataclass(frozen=True)
class Fuzzed:
    deployment: Deployment
    server: MuseProcess
    client: httpx.Client


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    d = with_keys(Deployment.copy_quickstart(tmp_path_factory.mktemp("fuzz")))
    server = MuseProcess(d.config, d.root / "serve.log").start()
    try:
        with server.client() as client:
            yield Fuzzed(d, server, client)
    finally:
        server.stop_gracefully()


def test_schemathesis_finds_nothing_in_thousands_of_generated_requests(
    fuzzed: Fuzzed, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "schemathesis.toml",
        tenant_key=BANK1_KEY,
        admin_key=ADMIN_KEY,
        tenants=["bank1", "bank2", "fintech3"],
        cards=CARDS,
    )
    run = run_schemathesis(
        fuzzed.server.url,
        config,
        tmp_path / "report",
        max_examples=1_200,
        seed=SEED,
        timeout_s=600,
    )
    assert run.returncode == 0, run.output[-6000:]
    assert "No issues found" in run.output, run.output[-3000:]
    assert run.requests >= 1_200, run.by_operation
    assert run.server_errors == 0
    score = run.by_operation["POST /v1/score"]
    # The scoring path itself was reached, and each kind of refusal was exercised.
    assert score[200] >= 300, score
    for status in (400, 401, 403, 405, 415, 422):
        assert score[status] > 0, (status, score)
    for operation in ("GET /admin/config", "POST /admin/reload", "GET /metrics"):
        assert run.by_operation[operation][200] > 0, run.by_operation
    assert fuzzed.client.get("/health/ready").status_code == 200
    assert "Traceback" not in fuzzed.server.output()


# -- what a schema-driven generator does not send ---------------------------------------------

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)


def _event_text(draw: st.DrawFn) -> str:
    """An event written by hand as JSON text: keys may repeat, numbers may be out of
    float range, values may be any JSON."""
    features = dict(SAMPLE)
    parts = [f'"event_id": {json.dumps(draw(st.text(min_size=1, max_size=8)))}']
    parts.append(f'"intent": {{"tenant": {json.dumps(draw(st.sampled_from(["bank1", "bank2"])))}}}')
    items = [f"{json.dumps(k)}: {json.dumps(v)}" for k, v in features.items()]
    if draw(st.booleans()):  # a duplicate key: the last one wins, as in every JSON parser
        k = draw(st.sampled_from(sorted(features)))
        items.append(f"{json.dumps(k)}: {json.dumps(draw(JSON_SCALARS))}")
    if draw(st.booleans()):  # a number JSON allows and a double does not hold
        k = draw(st.sampled_from(sorted(features)))
        big = draw(st.sampled_from(["1e400", "-1e400", "123456789012345678901", "1e-400"]))
        items.append(f"{json.dumps(k)}: {big}")
    parts.append('"features": {' + ", ".join(items) + "}")
    if draw(st.booleans()):
        parts.append(parts[0])  # the event id twice
    return "{" + ", ".join(parts) + "}"


event_texts = st.composite(_event_text)


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(text=event_texts())
def test_hand_written_json_gets_a_score_or_a_clear_4xx(fuzzed: Fuzzed, text: str) -> None:
    r = fuzzed.client.post(
        "/v1/score",
        content=text.encode(),
        headers={**bearer(BANK1_KEY), "content-type": "application/json"},
    )
    assert r.status_code in (200, 403, 422), (r.status_code, r.text, text)
    body = r.json()
    if r.status_code == 200:
        assert 0.0 <= body["score"] <= 1.0
    else:
        assert set(body) == {"error"}
        assert body["error"]["message"], body


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(body=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_arbitrary_bytes_are_refused_with_a_json_error(fuzzed: Fuzzed, body: bytes) -> None:
    r = fuzzed.client.post(
        "/v1/score", content=body, headers={**bearer(BANK1_KEY), "content-type": "application/json"}
    )
    assert 400 <= r.status_code < 500, (r.status_code, r.text, body)
    assert r.headers["content-type"] == "application/json"
    error = r.json()["error"]
    assert error["code"] in {
        "malformed_json",
        "invalid_request",
        "invalid_intent",
        "invalid_features",
    }
