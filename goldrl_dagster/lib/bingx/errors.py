"""Errors raised by the BingX client, split by what the caller should do about them."""

from __future__ import annotations


class BingXError(RuntimeError):
    """BingX answered with a non-zero envelope code or an HTTP error.

    Attributes:
        code: The envelope ``code`` as an int, or the HTTP status when there was no envelope.
        msg: The exchange's message (or a description of the HTTP failure).
    """

    def __init__(self, code: int, msg: str, *, context: str = "") -> None:
        self.code = int(code)
        self.msg = msg
        where = f" ({context})" if context else ""
        super().__init__(f"BingX error {self.code}: {msg}{where}")


class RateLimitedError(BingXError):
    """Rate limited (code 100410 or HTTP 429): transient, retry after a backoff."""


class BannedError(BingXError):
    """HTTP 418: the IP is temporarily banned after repeated 429s. Stop; do not retry."""


class UnknownSymbolError(BingXError, ValueError):
    """The symbol does not exist on BingX (code 109425) or an alias could not be resolved."""
