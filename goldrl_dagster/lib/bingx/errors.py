"""Errors raised by the BingX clients, split by what the caller should do about them.

Three outcome classes matter on every money path:

* :class:`RejectedError` — BingX gave a definitive answer: the request was not carried out
  (bad signature, insufficient margin, below the minimum size, …). Safe to record as rejected.
* :class:`UnknownOutcomeError` — the request may or may not have been carried out (a timeout,
  a dropped connection, HTTP 5xx, a rate-limit answer, "system busy"). The caller must
  reconcile (query the order by its client id), never assume either way.
* :class:`OrderNotFoundError` — the exchange does not know the order. For a cancel this may
  mean it was already filled (or never accepted): query it before concluding anything.
"""

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


class UnknownOutcomeError(BingXError):
    """The request may have been carried out or not: reconcile, never guess.

    Raised for timeouts, dropped connections, HTTP 5xx, rate-limit answers and BingX's
    "system busy" codes. ``client_order_id`` names the order to look up when the request
    placed one.
    """

    def __init__(
        self, code: int, msg: str, *, context: str = "", client_order_id: str | None = None
    ) -> None:
        super().__init__(code, msg, context=context)
        self.client_order_id = client_order_id


class RateLimitedError(UnknownOutcomeError):
    """Rate limited (code 100410 or HTTP 429): transient, retry after a backoff.

    For an order request this is still an unknown outcome: reconcile before re-sending.
    """


class BannedError(UnknownOutcomeError):
    """HTTP 418: the IP is temporarily banned after repeated 429s. Stop; do not retry."""


class RejectedError(BingXError):
    """A definitive answer: BingX did not carry out the request."""


class NotSentError(RejectedError):
    """The request was never sent (e.g. BingX's clock could not be measured first)."""


class UnknownSymbolError(RejectedError, ValueError):
    """The symbol does not exist on BingX (code 109425) or an alias could not be resolved."""


class AuthenticationError(RejectedError):
    """The exchange refused who we are (signature, key, IP whitelist or permission).

    Codes: 100001 bad signature, 100413 unknown API key, 100419 IP not whitelisted, 100004 key
    without the needed permission.
    """


class ClockSkewError(RejectedError):
    """The request's timestamp was outside BingX's window even after re-measuring the offset."""


class InsufficientMarginError(RejectedError):
    """Not enough margin or balance for the order (80012, 101204, 100202)."""


class BelowMinimumError(RejectedError):
    """Below the contract's minimum quantity (101400) or minimum notional (110425)."""


class DuplicateClientOrderIdError(RejectedError):
    """An order with this client order id already exists (101481, 109201): query it."""


class InvalidOrderError(RejectedError):
    """The exchange refused the order's parameters (109400, 101205 nothing to reduce, …)."""


class PositionModeError(RejectedError):
    """The account is in a position mode goldrl does not trade (hedge mode)."""


class OrderNotFoundError(BingXError):
    """The exchange does not know the order (80016, 80017, 109421).

    Answered to a cancel, this may mean the order was already filled (or never accepted):
    query it by id before concluding anything.
    """
