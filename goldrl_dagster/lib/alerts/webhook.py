"""The alert webhook: one JSON post per alert, ``{"text": ...}``, retried on failure.

Slack incoming webhooks and Telegram relays accept the body; connection errors, 429 and 5xx are
retried with exponential backoff (tenacity).

The URL is a secret (Slack's and Telegram's carry their token in the path): it is never logged,
shown in a repr or put in an exception message; :func:`redact_webhook_url` shows scheme and host.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)


class WebhookError(RuntimeError):
    """A post failed after its retries (the message never contains the URL)."""


class _Retryable(Exception):
    """A failure worth another try (connection trouble, 429, 5xx)."""


def redact_webhook_url(url: str) -> str:
    """The URL without its secret parts: ``scheme://host/…`` (port kept, path and query hidden)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparseable URL>"
    hidden = "/…" if (parts.path not in ("", "/") or parts.query) else ""
    return f"{parts.scheme}://{host}{port}{hidden}"


class WebhookSender:
    """Posts alert texts to one webhook.

    Args:
        url: The webhook URL (a secret).
        timeout: Seconds per request.
        attempts: Tries per post (the first included).
        backoff: ``(first, cap)`` seconds of the exponential wait between tries.
        transport: An httpx transport (tests), or None for the network.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        attempts: int = 4,
        backoff: tuple[float, float] = (0.5, 8.0),
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.__url = url
        self.where = redact_webhook_url(url)
        self.timeout = timeout
        self.attempts = attempts
        self.backoff = backoff
        self._transport = transport

    def __repr__(self) -> str:
        return f"WebhookSender({self.where})"

    def _post_once(self, client: httpx.Client, text: str) -> None:
        try:
            response = client.post(self.__url, json={"text": text})
        except httpx.TransportError as exc:  # its message may hold the URL: name the type only
            raise _Retryable(type(exc).__name__) from None
        if response.status_code == 429 or response.status_code >= 500:
            raise _Retryable(f"HTTP {response.status_code}")
        if response.status_code >= 400:
            raise WebhookError(f"webhook {self.where} refused the alert: HTTP "
                               f"{response.status_code}")  # fmt: skip

    def __call__(self, text: str) -> None:
        """Post ``{"text": text}``.

        Raises:
            WebhookError: If the webhook refused it (4xx other than 429) or kept failing.
        """
        first, cap = self.backoff
        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=first, max=cap),
            retry=retry_if_exception_type(_Retryable),
            reraise=False,
        )
        with httpx.Client(timeout=self.timeout, transport=self._transport) as client:
            try:
                retrying(self._post_once, client, text)
            except RetryError as exc:
                last = exc.last_attempt.exception()
                raise WebhookError(
                    f"webhook {self.where} failed {self.attempts} times, last: {last}"
                ) from None
