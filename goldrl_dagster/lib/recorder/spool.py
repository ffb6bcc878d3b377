"""The recorder's disk spool: batches the database could not take, kept until it can.

While PostgreSQL is unreachable the recorder keeps receiving. Rows wait in memory up to
``RecorderConfig.max_buffered_rows``; beyond that (and at shutdown) the buffer is written here,
one file per batch, and memory is freed. After the next successful write the recorder replays
the files, oldest first, through the same idempotent write, deleting each file only after its
rows are committed: a crash between the two replays it again and the write drops the repeats.

A file is written to a temporary name, flushed to disk and renamed, so a crash leaves either
a whole batch or no batch. It is a pickle read back by an unpickler that admits only the
types stream rows are made of (``datetime``, ``timezone``, ``timedelta`` and builtins), so a
file that is not one of ours cannot run code; a file that does not load (truncated, foreign,
wrong shape) is renamed ``*.bad`` with the reason logged, and replay goes on.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import os
import pickle
import time
from pathlib import Path
from typing import Any

from goldrl_dagster.lib.storage.stream_store import STREAM_TABLES

log = logging.getLogger("goldrl.recorder")

SUFFIX = ".batch"
_ALLOWED = {("datetime", "datetime"), ("datetime", "timezone"), ("datetime", "timedelta")}

Batch = dict[str, list[tuple]]


class SpoolError(ValueError):
    """A spool file that is not a batch of stream rows."""


class _RowUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return getattr(dt, name)
        raise SpoolError(f"refers to {module}.{name}, which stream rows never hold")


def load_batch(path: Path) -> Batch:
    """Read one spool file.

    Args:
        path: The file.

    Returns:
        Rows per stream table.

    Raises:
        SpoolError: If the file does not hold a batch of stream rows (named in the message).
    """
    try:
        batch = _RowUnpickler(io.BytesIO(path.read_bytes())).load()
    except SpoolError as exc:
        raise SpoolError(f"{path.name}: {exc}") from None
    except Exception as exc:  # truncated or foreign bytes: any unpickling error
        raise SpoolError(f"{path.name}: not a readable batch ({type(exc).__name__})") from None
    if not isinstance(batch, dict):
        raise SpoolError(f"{path.name}: holds a {type(batch).__name__}, not rows per table")
    for table, rows in batch.items():
        if table not in STREAM_TABLES:
            raise SpoolError(f"{path.name}: unknown table {table!r}")
        if not isinstance(rows, list) or not all(isinstance(r, tuple) for r in rows):
            raise SpoolError(f"{path.name}: {table} rows are not a list of tuples")
    return batch


class Spool:
    """A directory of batches waiting for the database.

    Args:
        directory: Where the files go (created when missing).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def put(self, batch: Batch) -> Path:
        """Write a batch durably (temporary file, fsync, rename).

        Args:
            batch: Rows per stream table.

        Returns:
            The file written.
        """
        name = f"{time.time_ns():020d}-{os.getpid()}{SUFFIX}"
        final = self.directory / name
        temporary = final.with_suffix(".tmp")
        with temporary.open("wb") as out:
            pickle.dump({t: r for t, r in batch.items() if r}, out, protocol=5)
            out.flush()
            os.fsync(out.fileno())
        temporary.rename(final)
        return final

    def pending(self) -> list[Path]:
        """Files waiting, oldest first (leftover temporary files of a crash are removed)."""
        for leftover in self.directory.glob("*.tmp"):
            leftover.unlink(missing_ok=True)
        return sorted(self.directory.glob(f"*{SUFFIX}"))

    def quarantine(self, path: Path, reason: str) -> Path:
        """Set a file that does not load aside as ``*.bad`` and log why."""
        bad = path.with_suffix(".bad")
        path.rename(bad)
        log.error("recorder spool: %s set aside as %s: %s", path.name, bad.name, reason)
        return bad
