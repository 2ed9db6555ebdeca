"""uvicorn's HTTP protocol with the deadlines it lacks: a request must arrive in time.

uvicorn (httptools) bounds an idle keep-alive connection after a response, but nothing
else: a connection that never sends a byte, or trickles its headers or its body a byte at
a time (slowloris), holds a socket and a parser forever. A fleet sits behind a load
balancer that has such timeouts (haproxy's ``timeout http-request``), but a replica must
not depend on one being configured. So each request gets ``request_timeout_s`` from its
first byte (or from the connection's opening, for the first) until its body is complete:

- headers not complete in time: 408 ``request_timeout`` if some arrived, else the
  connection is closed silently (nothing was asked);
- body not complete in time: 408 ``request_timeout``;

both with ``connection: close``. The application is not involved (its handler may be
waiting on the body: it then sees the client as gone). Counted per reason in
``muse_connections_closed_total`` (read by the app's metrics).

A subclass rather than a fork: it hooks the parser callbacks uvicorn already has
(``connection_made``, ``on_message_begin``, ``on_headers_complete``,
``on_message_complete``, ``connection_lost``) and calls them unchanged.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["CLOSED", "DEFAULT_REQUEST_TIMEOUT_S", "GuardedHttpToolsProtocol"]

DEFAULT_REQUEST_TIMEOUT_S = 10.0
#: Connections closed by a deadline, by reason (``header_timeout``, ``body_timeout``,
#: ``idle``): process-wide, exported by the app's metrics.
CLOSED: Counter[str] = Counter()

_BODY = (
    b'{"error":{"code":"request_timeout","message":"the request did not arrive in time: '
    b'send headers and body within %d s"}}'
)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """:class:`HttpToolsProtocol` plus a deadline on each request's arrival."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._started = False  # a byte of the current request arrived
        self._reading_body = False
        self._limit = float(getattr(self.config, "request_timeout_s", DEFAULT_REQUEST_TIMEOUT_S))

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._started = True
        if self._deadline is None:  # a keep-alive connection's next request
            self._arm()

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._reading_body = True

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()
        self._started = self._reading_body = False

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self._limit, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if not self._started:
            CLOSED["idle"] += 1
            self.transport.close()
            return
        CLOSED["body_timeout" if self._reading_body else "header_timeout"] += 1
        responded = self.cycle is not None and self.cycle.response_started
        if not responded:
            body = _BODY % int(self._limit)
            self.transport.write(
                b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
            )
        if self.cycle is not None:
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        self.transport.close()
