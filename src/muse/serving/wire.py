"""The JSON wire format of ``POST /v1/score``, decoded and encoded with msgspec.

One event ``{"event_id", "intent", "features"}`` or a batch ``{"events": [...]}``; the
answer is ``{"event_id", "score"}`` or a list of them.

Two decoders: the first types every feature value as a float, so msgspec checks them in C
while it parses (and turns JSON integers into floats) — the usual request then needs no
per-value check in Python (:attr:`ParsedRequest.checked`). A body it refuses is decoded
again with plain mappings and checked by the scoring core, whose errors name the exact
attribute or feature (msgspec's own would only say ``$.features[...]``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Annotated, Any, NamedTuple

import msgspec

from muse.serving.errors import HTTPError

__all__ = [
    "MAX_ID_CHARS",
    "EventIn",
    "ParsedRequest",
    "decode_score_request",
    "encode_scores",
]

#: The longest event id and intent attribute value accepted: both are written to every lake
#: row and kept in memory per queued shadow, so a client cannot make rows of any size.
MAX_ID_CHARS = 256
EventId = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=MAX_ID_CHARS,
        description="The client's id of the event, echoed in the answer and the score lake.",
    ),
]


class EventIn(msgspec.Struct, forbid_unknown_fields=True):
    """One event of a request."""

    event_id: EventId
    intent: dict[str, Any]
    features: dict[str, Any]


class _Body(msgspec.Struct, forbid_unknown_fields=True):
    event_id: EventId | None = None
    intent: dict[str, Any] | None = None
    features: dict[str, Any] | None = None
    events: list[EventIn] | None = None


class _CheckedEvent(msgspec.Struct, forbid_unknown_fields=True):
    event_id: EventId
    intent: dict[str, Any]
    features: dict[str, float]


class _CheckedBody(msgspec.Struct, forbid_unknown_fields=True):
    event_id: EventId | None = None
    intent: dict[str, Any] | None = None
    features: dict[str, float] | None = None
    events: list[_CheckedEvent] | None = None


class ParsedRequest(NamedTuple):
    """The events of a request; ``checked``: every feature value is a finite float."""

    events: Sequence[EventIn | _CheckedEvent]
    batch: bool
    checked: bool = False


class _ScoreOut(msgspec.Struct):
    event_id: str
    score: float


_decoder = msgspec.json.Decoder(_Body)
_checked_decoder = msgspec.json.Decoder(_CheckedBody)
_encoder = msgspec.json.Encoder()
_PATH = re.compile(r"at `\$(?:\.events\[(\d+)\])?\.?([^`]*)`")


def decode_score_request(body: bytes, max_events: int) -> ParsedRequest:
    """Parse a request body; :class:`HTTPError` 400 (malformed JSON) or 422 (wrong shape)."""
    try:
        return _shape(_checked_decoder.decode(body), max_events, checked=True)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        pass  # anything to report: the plain decoder and the scoring core name it
    try:
        parsed = _decoder.decode(body)
    except (RecursionError, UnicodeDecodeError) as e:
        raise _malformed(e) from None
    except msgspec.ValidationError as e:
        # msgspec validates while parsing: a truncated body can fail as a "wrong type"
        # before the syntax error shows. Malformed JSON is a 400 whatever the shape.
        try:
            msgspec.json.decode(body)
        except (RecursionError, UnicodeDecodeError) as syntax:
            raise _malformed(syntax) from None
        except msgspec.DecodeError as syntax:
            parsed = _lenient(body, syntax)
        else:
            raise _shape_error(e) from None
    except msgspec.DecodeError as e:
        parsed = _lenient(body, e)
    return _shape(parsed, max_events, checked=False)


def _shape(parsed: _Body | _CheckedBody, max_events: int, *, checked: bool) -> ParsedRequest:
    """One event or a batch, not both, not neither; a batch within ``max_events``."""
    if parsed.events is not None:
        if parsed.event_id is not None or parsed.intent is not None or parsed.features is not None:
            raise HTTPError(
                422,
                "invalid_request",
                "send either one event {event_id, intent, features} or a batch {events: [...]}, not both",
            )
        if not parsed.events:
            raise HTTPError(422, "invalid_request", "a batch needs at least one event", "events")
        if len(parsed.events) > max_events:
            raise HTTPError(
                413,
                "batch_too_large",
                f"a batch may hold at most {max_events} events, got {len(parsed.events)}; split it",
                "events",
            )
        events: Sequence[EventIn | _CheckedEvent] = parsed.events
        for i, event in enumerate(events):
            _check_intent(event.intent, i)
        return ParsedRequest(events, batch=True, checked=checked)
    missing = [name for name in ("event_id", "intent", "features") if getattr(parsed, name) is None]
    if missing:
        raise HTTPError(
            422,
            "invalid_request",
            f"missing field(s) {missing}: send {{event_id, intent, features}} or {{events: [...]}}",
            missing[0],
        )
    assert parsed.event_id is not None and parsed.intent is not None  # noqa: PT018
    assert parsed.features is not None
    _check_intent(parsed.intent, None)
    one = (_CheckedEvent if checked else EventIn)(parsed.event_id, parsed.intent, parsed.features)
    return ParsedRequest([one], batch=False, checked=checked)


def _check_intent(intent: dict[str, Any], index: int | None) -> None:
    """Intent values are ids too: at most :data:`MAX_ID_CHARS` long (their other checks —
    declared attribute, a string — are the scoring core's, which names what is wrong)."""
    for key, value in intent.items():
        if isinstance(value, str) and len(value) > MAX_ID_CHARS:
            raise HTTPError(
                422,
                "invalid_intent",
                f"intent attribute {key!r} is {len(value)} characters long; at most "
                f"{MAX_ID_CHARS} are accepted",
                f"intent.{key}",
                index,
            )


def encode_scores(event_ids: Sequence[str], scores: Sequence[float], batch: bool) -> bytes:
    """``{"event_id", "score"}`` for one event, a JSON list of them for a batch."""
    if not batch:
        return _encoder.encode(_ScoreOut(event_ids[0], scores[0]))
    return _encoder.encode([_ScoreOut(e, s) for e, s in zip(event_ids, scores, strict=True)])


def _shape_error(e: msgspec.ValidationError) -> HTTPError:
    text = str(e)
    m = _PATH.search(text)
    index = int(m.group(1)) if m and m.group(1) else None
    field = m.group(2).split("[")[0] if m and m.group(2) else None
    named = re.search(r"(?:unknown|missing required) field `([^`]+)`", text)
    if named:
        field = named.group(1)
    return HTTPError(422, "invalid_request", text, field or None, index)


def _lenient(body: bytes, error: msgspec.DecodeError) -> _Body:
    # Python's json module writes NaN and Infinity, which strict JSON parsers reject.
    # Accept them here so the scoring core reports *which* feature is not finite (422)
    # instead of a bare syntax error; anything else malformed stays a 400.
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise _malformed(error) from None
    try:
        if not _has_non_finite(doc):
            raise _malformed(error)
        return msgspec.convert(doc, _Body)
    except RecursionError:
        raise _malformed(RecursionError()) from None
    except msgspec.ValidationError as e:
        raise _shape_error(e) from None


def _malformed(error: BaseException) -> HTTPError:
    if isinstance(error, RecursionError):
        reason = "nested too deeply"
    elif isinstance(error, UnicodeDecodeError):
        reason = "not UTF-8"
    else:
        reason = str(error)
    return HTTPError(400, "malformed_json", f"request body is not valid JSON: {reason}")


def _has_non_finite(doc: object) -> bool:
    if isinstance(doc, float):
        return not math.isfinite(doc)
    if isinstance(doc, dict):
        return any(_has_non_finite(v) for v in doc.values())
    if isinstance(doc, list):
        return any(_has_non_finite(v) for v in doc)
    return False
