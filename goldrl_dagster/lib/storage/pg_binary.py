"""PostgreSQL binary formats built and parsed with numpy/Arrow, without per-row Python work.

Two jobs, both for bulk candle I/O (``bulk.py``):

* :func:`encode_copy` turns a polars frame into the payload of ``COPY … FROM STDIN (FORMAT
  binary)``: fixed-width columns become one numpy structured array (one record per row), text
  columns are length-prefixed with Arrow's element-wise join, and the row pieces are joined
  into one buffer by Arrow's C++ kernels.
* :func:`decode_records` and :func:`decode_text` read rows aggregated on the server into a few
  values (fixed-size records of binary send values; texts concatenated, their byte lengths in
  the records), so a million rows arrive as a few buffers that numpy views decode.

Only types whose binary layout is encoded here exactly are accepted; anything else returns None
(encode) or raises :class:`UnsupportedBinary` (decode) so that callers fall back to ADBC.
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from queue import Empty, Queue
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
COPY_TRAILER = b"\xff\xff"
# PostgreSQL counts timestamps from 2000-01-01 (µs) and dates from 2000-01-01 (days).
PG_EPOCH_US = 946_684_800_000_000
PG_EPOCH_DAYS = 10_957
# 'infinity' / '-infinity' timestamps: no polars value stands for them.
_TS_INFINITY = (np.iinfo(np.int64).max, np.iinfo(np.int64).min)

# Binary layout kind (of _fixed_kind, or "text") -> the column types written and read with it
# (format_type spelling, type modifier removed). The server's receive and send functions would
# accept other types through implicit casts: callers check the column's type against these.
COLUMN_TYPES: dict[str, tuple[str, ...]] = {
    "float8": ("double precision",),
    "float4": ("real",),
    "int8": ("bigint",),
    "int4": ("integer",),
    "int2": ("smallint",),
    "bool": ("boolean",),
    "timestamptz": ("timestamp with time zone",),
    "timestamp": ("timestamp without time zone",),
    "date": ("date",),
    "text": ("text", "character varying"),
}
# Rows per block when filling records: a block stays in the CPU cache.
_BLOCK_BYTES = 256 * 1024


@functools.cache
def _no_separator() -> pa.Scalar:
    # Built on first use: pa.scalar() imports pandas (1.6 s), which data-plane commands such as
    # a dry-run import never need.
    return pa.scalar(b"", pa.large_binary())


class UnsupportedBinary(ValueError):
    """The binary data holds something this module does not decode exactly (caller falls back)."""


_FIXED_KINDS: dict[pl.DataType, str] = {
    pl.Float64(): "float8", pl.Float32(): "float4", pl.Int64(): "int8", pl.Int32(): "int4",
    pl.Int16(): "int2", pl.Boolean(): "bool", pl.Date(): "date",
}  # fmt: skip


def _fixed_kind(dtype: pl.DataType) -> str | None:
    """The PostgreSQL binary layout a polars dtype is written with, or None if unsupported."""
    if isinstance(dtype, pl.Datetime):
        if dtype.time_unit not in ("us", "ms"):
            return None
        return "timestamptz" if dtype.time_zone is not None else "timestamp"
    return _FIXED_KINDS.get(dtype)


_WIRE = {
    "float8": ">f8", "float4": ">f4", "int8": ">i8", "int4": ">i4", "int2": ">i2", "bool": "u1",
    "timestamptz": ">i8", "timestamp": ">i8", "date": ">i4",
}  # fmt: skip


def _fixed_values(series: pl.Series, kind: str) -> tuple[np.ndarray, str]:
    """Native-order values of a NULL-free fixed-width column and their wire dtype.

    Assigning the values into a field of the wire dtype byte-swaps them on the way.
    """
    if kind in ("timestamptz", "timestamp"):
        raw = series.dt.epoch("us").to_numpy().astype(np.int64, copy=False)
        return raw - PG_EPOCH_US, _WIRE[kind]
    if kind == "date":
        days = series.cast(pl.Int32).to_numpy().astype(np.int32, copy=False)
        return days - PG_EPOCH_DAYS, _WIRE[kind]
    if kind == "bool":
        return series.to_numpy().astype(np.uint8), _WIRE[kind]
    return series.to_numpy(), _WIRE[kind]


def _binary_array(data: np.ndarray, offsets: np.ndarray) -> pa.Array:
    """A large_binary Arrow array over a bytes buffer and int64 offsets (no copy)."""
    return pa.Array.from_buffers(
        pa.large_binary(),
        len(offsets) - 1,
        [None, pa.py_buffer(offsets.astype(np.int64, copy=False)), pa.py_buffer(data)],
    )


def _text_bytes(series: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """UTF-8 bytes of a text column (concatenated) and its int64 offsets."""
    array = pa.array(series.to_arrow()).cast(pa.large_string())
    _, offsets_buf, data_buf = array.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)
    offsets = offsets[array.offset : array.offset + len(array) + 1]
    if data_buf is None:
        return np.empty(0, dtype=np.uint8), offsets
    return np.frombuffer(data_buf, dtype=np.uint8), offsets


def _uniform_width(series: pl.Series) -> int | None:
    """The byte length shared by every value of a NULL-free text column, else None."""
    if series.null_count():
        return None
    lengths = series.str.len_bytes()
    low, high = lengths.min(), lengths.max()
    return int(low) if low is not None and low == high else None  # type: ignore[arg-type]


def _fixed_records(
    frame: pl.DataFrame, columns: Sequence[tuple[str, str]], texts: Sequence[tuple[str, int]]
) -> np.ndarray:
    """One record per row: int16 field count, NULL-free fixed-width fields, same-length texts."""
    fields: list[tuple[str, str]] = [("count", ">i2")]
    values: dict[str, np.ndarray] = {}
    widths: dict[str, int] = {}
    constants: dict[str, bytes] = {}
    for index, (name, kind) in enumerate(columns):
        column, wire = _fixed_values(frame[name], kind)
        fields += [(f"l{index}", ">i4"), (f"v{index}", wire)]
        values[f"v{index}"] = column
        widths[f"l{index}"] = np.dtype(wire).itemsize
    for index, (name, width) in enumerate(texts, start=len(columns)):
        fields.append((f"l{index}", ">i4"))
        widths[f"l{index}"] = width
        if not width:
            continue
        fields.append((f"v{index}", f"S{width}"))
        first = frame[name][0]
        if (frame[name] == first).all():
            constants[f"v{index}"] = first.encode()
        else:
            data, offsets = _text_bytes(frame[name])
            start = int(offsets[0])
            values[f"v{index}"] = data[start : start + width * frame.height].view(f"S{width}")
    dtype = np.dtype(fields)
    template = np.zeros(1, dtype=dtype)
    template["count"] = frame.width
    for field, width in widths.items():
        template[field] = width
    for field, constant in constants.items():
        template[field] = constant
    records = np.empty(frame.height, dtype=dtype)
    # Filled a cache-sized block of rows at a time: writing each column across the whole
    # array would stream every record through memory once per field.
    step = max(1, _BLOCK_BYTES // dtype.itemsize)
    for start in range(0, frame.height, step):
        block = records[start : start + step]
        block[...] = template[0]
        for field, column in values.items():
            block[field] = column[start : start + step]
    return records


def _record_pieces(records: np.ndarray) -> pa.Array:
    """The records as a large_binary Arrow array, one element per row (no copy)."""
    size = records.dtype.itemsize
    offsets = np.arange(len(records) + 1, dtype=np.int64) * size
    return _binary_array(records.view(np.uint8).reshape(-1), offsets)


def _nullable_fixed_pieces(series: pl.Series, kind: str) -> pa.Array:
    """One binary element per row: ``int32 length + value``, or ``int32 -1`` for NULL."""
    valid = series.is_not_null().to_numpy()
    values, wire = _fixed_values(series.fill_null(strategy="zero"), kind)
    width = np.dtype(wire).itemsize
    records = np.empty(series.len(), dtype=np.dtype([("l", ">i4"), ("v", wire)]))
    records["l"] = np.where(valid, width, -1)
    records["v"] = values
    keep = np.ones((series.len(), 4 + width), dtype=bool)
    keep[:, 4:] = valid[:, None]
    data = records.view(np.uint8).reshape(series.len(), 4 + width)[keep]
    sizes = np.where(valid, 4 + width, 4)
    offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
    return _binary_array(np.ascontiguousarray(data), offsets)


def _text_pieces(series: pl.Series) -> pa.Array:
    """One binary element per row: ``int32 length + UTF-8 bytes``, or ``int32 -1`` for NULL."""
    text = pa.array(series.to_arrow()).cast(pa.large_binary())
    lengths = pc.fill_null(pc.binary_length(text), 0).to_numpy().astype(np.int64)
    valid = series.is_not_null().to_numpy()
    header = np.where(valid, lengths, -1).astype(">i4")
    prefix = _binary_array(header.view(np.uint8), np.arange(series.len() + 1, dtype=np.int64) * 4)
    return pc.binary_join_element_wise(prefix, text, _no_separator(), null_handling="skip")


def copy_plan(
    schema: Mapping[str, pl.DataType], target_types: Mapping[str, str]
) -> list[tuple[str, str]] | None:
    """Decide how each column is written, or None if one cannot be written exactly.

    Args:
        schema: The frame's schema.
        target_types: The target table's column types (``format_type`` spelling).

    Returns:
        ``(column, kind)`` pairs with kind ``text`` or a fixed-width layout name, or None when
        a column's dtype has no exact binary encoding here or does not match its target type.
    """
    plan: list[tuple[str, str]] = []
    for name, dtype in schema.items():
        target = target_types.get(name)
        if target is None:
            return None
        # A type modifier (varchar(40), timestamp(3)) is applied by the server's receive
        # function, exactly as for ADBC's binary COPY.
        target = re.sub(r"\(\d+\)", "", target).replace("  ", " ")
        if dtype == pl.String:
            if target not in COLUMN_TYPES["text"]:
                return None
            plan.append((name, "text"))
            continue
        kind = _fixed_kind(dtype)
        if kind is None or target not in COLUMN_TYPES[kind]:
            return None
        plan.append((name, kind))
    return plan


def encode_copy(
    frame: pl.DataFrame, plan: Sequence[tuple[str, str]], *, chunk_rows: int = 16_384
) -> tuple[list[str], Iterator[bytes | memoryview]]:
    """Build the ``COPY … FROM STDIN (FORMAT binary)`` payload of a frame, chunk by chunk.

    NULL-free fixed-width columns and text columns whose values all have the same byte length
    (a frame of one instrument, interval and source) come first, as one numpy record per row:
    such rows are a single fixed-stride buffer, with no per-row work at all. The returned
    column order is the one the COPY statement must list. Chunks are built lazily, so a
    writer thread can send one while the next is encoded.

    Args:
        frame: Rows to write.
        plan: The frame's columns and their layouts, from :func:`copy_plan`.
        chunk_rows: Rows per chunk.

    Returns:
        The column order of the payload and an iterator over its chunks (header, rows,
        trailer), to be written in order.
    """
    dense = [(n, k) for n, k in plan if k != "text" and frame[n].null_count() == 0]
    uniform: list[tuple[str, int]] = []
    for name, kind in plan:
        width = _uniform_width(frame[name]) if kind == "text" else None
        if width is not None:
            uniform.append((name, width))
    placed = {n for n, _ in dense} | {n for n, _ in uniform}
    rest = [(n, k) for n, k in plan if n not in placed]
    order = [n for n, _ in dense] + [n for n, _ in uniform] + [n for n, _ in rest]

    def rows(part: pl.DataFrame) -> bytes | memoryview:
        records = _fixed_records(part, dense, uniform)
        if not rest:
            return memoryview(records.view(np.uint8).reshape(-1))
        pieces = [_record_pieces(records)]
        for name, kind in rest:
            if kind == "text":
                pieces.append(_text_pieces(part[name]))
            else:
                pieces.append(_nullable_fixed_pieces(part[name], kind))
        joined = pc.binary_join_element_wise(*pieces, _no_separator())
        offsets = np.frombuffer(joined.buffers()[1], dtype=np.int64)
        start = int(offsets[joined.offset])
        end = int(offsets[joined.offset + len(joined)])
        return memoryview(joined.buffers()[2])[start:end]

    def chunks() -> Iterator[bytes | memoryview]:
        yield COPY_HEADER
        yield from _prefetched(
            rows(frame.slice(start, chunk_rows)) for start in range(0, frame.height, chunk_rows)
        )
        yield COPY_TRAILER

    return order, chunks()


def _prefetched(
    items: Iterator[bytes | memoryview], depth: int = 4
) -> Iterator[bytes | memoryview]:
    """Produce the items in a worker thread, a few ahead of the consumer.

    numpy and Arrow release the GIL while copying, so the next chunks are encoded while the
    caller sends the previous ones and the server ingests them.
    """
    queue: Queue[tuple[bool, Any]] = Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                queue.put((True, item))
            queue.put((False, None))
        except BaseException as exc:  # handed to the consumer
            queue.put((False, exc))

    worker = threading.Thread(target=produce, name="pg-binary-encode", daemon=True)
    worker.start()
    try:
        while True:
            more, item = queue.get()
            if not more:
                if item is not None:
                    raise item
                return
            yield item
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting on a full queue
            with contextlib.suppress(Empty):
                queue.get_nowait()
            worker.join(timeout=0.01)


# Binary layouts decode_records reads: big-endian numpy dtypes.
VALUE_LAYOUTS: dict[str, str] = {
    "float8": ">f8",
    "float4": ">f4",
    "int8": ">i8",
    "int4": ">i4",
    "int2": ">i2",
    "timestamptz": ">i8",
    "timestamp": ">i8",
}


def decode_records(
    buf: bytes | memoryview | None, layout: Mapping[str, str], count: int
) -> dict[str, np.ndarray]:
    """Decode concatenated fixed-size records of binary send values into numpy columns.

    A record is the send values of its fields back to back (``float8send(a) ||
    timestamptz_send(t) || int4send(octet_length(s))``), so the whole buffer is one numpy
    structured array. Timestamps come back as int64 microseconds since the Unix epoch.

    Args:
        buf: The records; None (an aggregate over no rows) gives empty columns.
        layout: Field name -> a key of :data:`VALUE_LAYOUTS`, or ``text-length`` (int4).
        count: The number of rows aggregated: fewer records mean a NULL dropped a row.

    Returns:
        One native-order array per field.

    Raises:
        UnsupportedBinary: If there are not ``count`` records or a timestamp is infinite.
    """
    wire = np.dtype(
        [(n, ">i4" if k == "text-length" else VALUE_LAYOUTS[k]) for n, k in layout.items()]
    )
    data = b"" if buf is None else buf
    if len(data) != count * wire.itemsize:
        raise UnsupportedBinary("records do not match the row count (NULLs)")
    records = np.frombuffer(data, dtype=wire)
    out: dict[str, np.ndarray] = {}
    for name, kind in layout.items():
        values = records[name].astype(records.dtype[name].newbyteorder("="))
        if kind in ("timestamptz", "timestamp"):
            if count and np.isin(values, _TS_INFINITY).any():
                raise UnsupportedBinary("infinite timestamp")
            values += PG_EPOCH_US
        out[name] = values
    return out


def decode_text(lengths: np.ndarray, data: bytes | None) -> pa.Array:
    """Rebuild a NULL-free text column from its UTF-8 byte lengths and their concatenation.

    Args:
        lengths: Byte length of every value (``octet_length``), in row order.
        data: The values concatenated (``string_agg(x, '')``); None when there are no rows.

    Returns:
        A ``large_string`` Arrow array (UTF-8 validated).

    Raises:
        UnsupportedBinary: If the lengths do not add up to the data or a value is not UTF-8.
    """
    blob = data or b""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if (lengths < 0).any() or int(offsets[-1]) != len(blob):
        raise UnsupportedBinary("text lengths do not add up to the text received")
    array = pa.Array.from_buffers(
        pa.large_string(), len(lengths), [None, pa.py_buffer(offsets), pa.py_buffer(blob)]
    )
    try:
        array.validate(full=True)
    except pa.ArrowInvalid as exc:
        raise UnsupportedBinary(f"text is not valid UTF-8: {exc}") from exc
    return array
