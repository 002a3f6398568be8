"""Fault helpers of the mock: its own token bucket and the connection reset.

The knobs themselves live in :mod:`sender.mock_mitto.config`; the handlers in
:mod:`sender.mock_mitto.server` decide per request which fault fires.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections.abc import Callable

# SO_LINGER on with a zero timeout makes close() send RST instead of FIN: the client sees a
# reset, not an orderly end of stream.
_LINGER_RESET = struct.pack("ii", 1, 0)


class TokenBucket:
    """The mock's own rate limit: ``rate_per_s`` tokens per second, at most ``burst`` saved."""

    __slots__ = ("_clock", "_stamp", "_tokens", "burst", "rate_per_s")

    def __init__(
        self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._stamp = clock()

    def take(self) -> float:
        """Take one token: 0.0 when granted, else the seconds until one will be available."""
        now = self._clock()
        tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.rate_per_s)
        self._stamp = now
        if tokens >= 1.0:
            self._tokens = tokens - 1.0
            return 0.0
        self._tokens = tokens
        return (1.0 - tokens) / self.rate_per_s


def reset_connection(transport: asyncio.Transport | None) -> None:
    """Drop the connection with a TCP RST, without reading the request body."""
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # The socket can already be gone when the peer closed first; then a plain abort is all
        # that is left to do.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    transport.abort()
