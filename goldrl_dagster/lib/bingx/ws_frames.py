"""BingX market-stream frames: decoding, heartbeats, and opening a socket.

Every BingX frame is gzip-compressed; the server pings (``Ping`` or ``{"ping": …}``) and drops a
client that does not answer. What every market-stream reader needs, in one place.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import zlib

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

log = logging.getLogger(__name__)

_GZIP_MAGIC = b"\x1f\x8b"


class CorruptFrameError(ValueError):
    """A frame that is neither valid gzip nor UTF-8 text."""


# Failures after which reconnecting can help. Invalid URLs and refused subscriptions cannot.
RECONNECTABLE = (ConnectionClosed, OSError, TimeoutError, EOFError, CorruptFrameError)


def decode_frame(frame: str | bytes) -> str:
    """The text of a WebSocket frame: BingX gzips every frame; plain text is tolerated.

    Raises:
        CorruptFrameError: If the frame is neither valid gzip nor UTF-8 text.
    """
    if isinstance(frame, str):
        return frame
    try:
        if frame.startswith(_GZIP_MAGIC):
            return gzip.decompress(frame).decode()
        return frame.decode()
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
        raise CorruptFrameError(f"undecodable frame ({exc}): {frame[:40]!r}") from None


CLOSE_TIMEOUT_S = 1.0  # how long closing a connection waits for the server's close frame


async def open_socket(ws_url: str, open_timeout: float) -> ClientConnection:
    """Open a market-stream WebSocket.

    A connection is closed while pushes may still be queued unread (a refill blocked the
    reader): the close handshake cannot complete behind a full queue, so closing waits
    ``CLOSE_TIMEOUT_S``, not the library's default 10 s.
    """
    return await connect(ws_url, open_timeout=open_timeout, close_timeout=CLOSE_TIMEOUT_S)


async def read_message(ws: ClientConnection, idle_timeout: float, who: str) -> dict | None:
    """Read one frame: its JSON object, or None for a heartbeat (answered) or a frame of no use.

    Args:
        ws: The connection.
        idle_timeout: Seconds to wait for a frame.
        who: Named in the log when a frame is ignored.

    Raises:
        TimeoutError: If no frame arrives within ``idle_timeout``.
        CorruptFrameError: If the frame cannot be decoded.
    """
    frame = await asyncio.wait_for(ws.recv(), timeout=idle_timeout)
    text = decode_frame(frame)
    if text == "Ping":
        await ws.send("Pong")
        return None
    try:
        message = json.loads(text)
    except ValueError:
        log.warning("%s: ignoring a non-JSON frame %.200r", who, text)
        return None
    if not isinstance(message, dict):
        return None
    if "ping" in message:  # JSON heartbeat variant
        await ws.send(json.dumps({"pong": message["ping"], "time": message.get("time")}))
        return None
    return message
