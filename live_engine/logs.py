"""The live engine's log lines: bound context, and one JSON object per line (``--log-format``).

:class:`BoundLog` is a ``LoggerAdapter`` whose context (instrument, model, and what the loop binds
as it goes: bar time, order, rollout stage) travels with every record as attributes; the text
format prefixes the message with the instrument and model as before, :class:`JsonFormatter`
writes the context as fields.

Secrets never reach the output: every field of a JSON line is passed through :func:`redact`,
which masks URL passwords (``redact_url``), webhook paths, signatures and API-key parameters, and
the literal values of the BingX key and secret and the alert webhook URL found in the
environment (or in the files their ``*_FILE`` variables name).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Mapping, MutableMapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from goldrl_dagster.lib.bingx.credentials import FILE_SUFFIX, KEY_VARIABLE, SECRET_VARIABLE
from goldrl_dagster.lib.config import redact_url

LOG_FORMATS = ("text", "json")
CONTEXT_FIELDS = ("instrument", "model_id", "bar_time", "order", "stage", "session_id")
"""Context a :class:`BoundLog` binds; JSON lines carry each that is set."""
SECRET_VARIABLES = (KEY_VARIABLE, SECRET_VARIABLE, "GOLDRL_ALERT_WEBHOOK_URL")
_MASK = "***"
_PATTERNS = (
    # key=value secrets in query strings or text: signature, apiKey, listenKey, token, secret
    re.compile(
        r"(?i)\b(signature|api[_-]?key|apikey|listen[_-]?key|token|secret|password)"
        r"(\s*[=:]\s*)([^\s&#,;'\"]+)"
    ),
    re.compile(r"(?i)(X-BX-APIKEY['\"]?\s*[:=]\s*['\"]?)([^\s'\",}]+)"),
    # webhook URLs carry their token in the path
    re.compile(r"(?i)(https?://(?:hooks\.slack\.com|api\.telegram\.org)/)(\S+)"),
)
# Standard LogRecord attributes: everything else on a record came from ``extra``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def secret_values(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The literal secrets configured in the environment (values or ``*_FILE`` contents)."""
    env = os.environ if environ is None else environ
    found = []
    for name in SECRET_VARIABLES:
        value = env.get(name, "").strip()
        path = env.get(name + FILE_SUFFIX, "").strip()
        if not value and path:
            try:
                value = Path(path).read_text().strip()
            except OSError:
                value = ""
        if len(value) >= 4:  # shorter values would mask ordinary text
            found.append(value)
    return tuple(sorted(set(found), key=len, reverse=True))


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with secrets masked (see the module docstring)."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, _MASK)
    text = redact_url(text) if "://" in text or "password=" in text.lower() else text
    text = _PATTERNS[0].sub(lambda m: f"{m.group(1)}{m.group(2)}{_MASK}", text)
    text = _PATTERNS[1].sub(lambda m: f"{m.group(1)}{_MASK}", text)
    return _PATTERNS[2].sub(lambda m: f"{m.group(1)}{_MASK}", text)


def _jsonable(value: Any, secrets: tuple[str, ...]) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v, secrets) for v in value]
    return redact(str(value), secrets)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, bound context, extras, error.

    Args:
        secrets: Literal values to mask (default: :func:`secret_values` of the environment).
    """

    def __init__(self, secrets: Iterable[str] | None = None) -> None:
        super().__init__()
        self.secrets = tuple(secret_values() if secrets is None else secrets)

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON, secrets masked."""
        document: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage(), self.secrets),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD and not name.startswith("_") and value is not None:
                document[name] = _jsonable(value, self.secrets)
        if record.exc_info:
            document["error"] = redact(self.formatException(record.exc_info), self.secrets)
        return json.dumps(document, ensure_ascii=False, default=str)


class RedactingFormatter(logging.Formatter):
    """The text format, with the same masking as :class:`JsonFormatter`."""

    def __init__(self, fmt: str, secrets: Iterable[str] | None = None) -> None:
        super().__init__(fmt)
        self.secrets = tuple(secret_values() if secrets is None else secrets)

    def format(self, record: logging.LogRecord) -> str:
        """The text line, secrets masked."""
        return redact(super().format(record), self.secrets)


class BoundLog(logging.LoggerAdapter):
    """A logger with bound context, carried by every record (attributes, for JSON lines).

    Text messages are prefixed ``[instrument model]`` as before.

    Args:
        logger: The logger written to.
        context: The initial context (``instrument`` and ``model_id`` at least).
    """

    def __init__(self, logger: logging.Logger, context: Mapping[str, Any]) -> None:
        super().__init__(logger, dict(context))

    def bind(self, **context: Any) -> None:
        """Add (or with None, clear) context for the lines logged from now on."""
        extra = self.extra
        assert isinstance(extra, dict)
        for name, value in context.items():
            if value is None:
                extra.pop(name, None)
            else:
                extra[name] = value

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        """Prefix the message with the instrument and model; attach the context to the record."""
        extra = dict(self.extra or {})
        kwargs["extra"] = {**extra, **kwargs.get("extra", {})}
        return f"[{extra.get('instrument')} {extra.get('model_id')}] {msg}", kwargs


def configure_logging(
    verbose: bool, log_format: str = "text", own_loggers: Iterable[str] = ()
) -> None:
    """One root handler in the chosen format, secrets masked; own loggers at INFO (DEBUG verbose).

    As ``logging.basicConfig``: a root logger that already has handlers of someone else (a test
    runner's) is left alone; a handler installed by an earlier call is replaced.

    Raises:
        ValueError: If ``log_format`` is not ``text`` or ``json``.
    """
    if log_format not in LOG_FORMATS:
        raise ValueError(f"--log-format must be text or json, got {log_format!r}")
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "goldrl_handler", False)]:
        root.removeHandler(old)
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.goldrl_handler = True  # type: ignore[attr-defined]
        handler.setFormatter(
            JsonFormatter() if log_format == "json"
            else RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )  # fmt: skip
        root.addHandler(handler)
        root.setLevel(logging.DEBUG if verbose else logging.WARNING)
    for name in own_loggers:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.INFO)
