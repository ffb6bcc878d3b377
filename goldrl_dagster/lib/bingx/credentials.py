"""BingX API credentials: read once, never shown.

The key and the secret come from ``GOLDRL_BINGX_API_KEY`` / ``GOLDRL_BINGX_API_SECRET``, or from
files named by ``GOLDRL_BINGX_API_KEY_FILE`` / ``GOLDRL_BINGX_API_SECRET_FILE`` (container
secrets). Neither value ever appears in a repr, a log line or an error message: objects show a
short fingerprint of the key (``key_id``) so an operator can tell accounts apart.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from pathlib import Path

KEY_VARIABLE = "GOLDRL_BINGX_API_KEY"
SECRET_VARIABLE = "GOLDRL_BINGX_API_SECRET"
FILE_SUFFIX = "_FILE"
MAX_LENGTH = 512


class CredentialsError(ValueError):
    """Credentials are missing or malformed (the message never contains them)."""


def key_fingerprint(api_key: str) -> str:
    """A short, stable, non-reversible name for an API key (first 8 hex of its SHA-256)."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:8]


def _check(name: str, value: str) -> str:
    value = value.strip()
    if not value:
        raise CredentialsError(f"{name} is empty")
    if len(value) > MAX_LENGTH:
        raise CredentialsError(f"{name} is longer than {MAX_LENGTH} characters")
    if not value.isascii() or not value.isprintable() or any(c.isspace() for c in value):
        raise CredentialsError(f"{name} contains whitespace or non-printable characters")
    return value


class Credentials:
    """An API key and its secret.

    Args:
        api_key: The BingX API key (sent in the ``X-BX-APIKEY`` header).
        secret: The API secret (used only to sign; never sent).

    Attributes:
        key_id: :func:`key_fingerprint` of the key, safe to log.

    Raises:
        CredentialsError: If either value is empty or contains whitespace or control characters.
    """

    __slots__ = ("__key", "__secret", "key_id")

    def __init__(self, api_key: str, secret: str) -> None:
        self.__key = _check("API key", api_key)
        self.__secret = _check("API secret", secret)
        self.key_id = key_fingerprint(self.__key)

    @property
    def api_key(self) -> str:
        """The API key, for the request header only."""
        return self.__key

    def sign(self, payload: str) -> str:
        """HMAC-SHA256 of ``payload`` with the secret, lower-case hex."""
        return hmac.new(self.__secret.encode(), payload.encode(), hashlib.sha256).hexdigest()

    def __repr__(self) -> str:
        return f"Credentials(key_id={self.key_id!r}, secret=<hidden>)"

    __str__ = __repr__

    def __reduce__(self) -> object:
        raise TypeError("Credentials cannot be pickled")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Credentials:
        """Read the key and secret from the environment (or from the files it names).

        Args:
            environ: Environment to read; ``os.environ`` when omitted.

        Raises:
            CredentialsError: If a value is missing, set twice (variable and file), unreadable
                or malformed. The message names the variable, never the value.
        """
        env = os.environ if environ is None else environ
        return cls(_read(env, KEY_VARIABLE), _read(env, SECRET_VARIABLE))


def _read(env: Mapping[str, str], variable: str) -> str:
    direct = env.get(variable)
    file_variable = variable + FILE_SUFFIX
    path = env.get(file_variable)
    if direct and path:
        raise CredentialsError(f"set either {variable} or {file_variable}, not both")
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise CredentialsError(
                f"{file_variable} names {path!r}, which cannot be read: {type(exc).__name__}"
            ) from None
    if direct:
        return direct
    raise CredentialsError(
        f"BingX credentials missing: set {variable} (or {file_variable} to a file holding it)"
    )
