"""The one write path for raw samples: a validated Batch → one call of the SQL function ts_ingest.

Called by the HTTP view and by anything else that ingests (an MQTT consumer later), always
inside tenant_context(): ts_ingest stamps the tenant from the transaction, never from a
parameter. Semantics (idempotence, last write wins, kind checks) live in ts_ingest; see
traksense/db/sql/20_ingest.sql.

The arrays travel in PostgreSQL's binary array format. psycopg's list dumper encodes element by
element in a Python loop (about 0.5 µs per element, so 20 ms for a 10,000-sample batch); the
hot arrays are instead assembled here with whole-array C operations (`bytes.join`, `array`,
extended-slice assignment), about ten times faster. Rarely used arrays (booleans, texts, numbers
of a batch mixing kinds) go through psycopg's own dumpers.
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Callable
from datetime import datetime
from typing import NamedTuple, cast

import psycopg
from django.db import connections
from psycopg import pq
from psycopg.abc import AdaptContext
from psycopg.adapt import Dumper, PyFormat
from psycopg.postgres import types

from traksense.core.errors import ApiError
from traksense.db.context import active_alias
from traksense.db.cursors import psycopg_cursor
from traksense.ingest.parse import Batch

# The casts pin the array types whatever Python passes; an all-NULL value array is sent as one
# NULL, which unnest() pads.
_INGEST = (
    "SELECT accepted, duplicates, overwritten FROM ts_ingest("
    "%b::text[], %b::text[], %b::timestamptz[], %b::float8[], %b::boolean[], %b::text[])"
)


class WriteResult(NamedTuple):
    accepted: int
    duplicates: int
    overwritten: int


def write_samples(batch: Batch) -> WriteResult:
    """Store `batch` for the tenant of the current tenant_context(), atomically.

    Raises ApiError 400 (code kind_mismatch) when a value's kind differs from its point's
    recorded kind or a point gets two kinds in one batch; nothing of the batch is written then
    (the caller's transaction must be rolled back, which tenant_api does).
    """
    if not connections[active_alias()].in_atomic_block:
        raise RuntimeError("write_samples() must run inside tenant_context()")
    params = (
        _TextArray.pack(batch.devices),
        _TextArray.pack(batch.points),
        _TimestamptzArray.pack(batch.ts),
        _Float8Array.pack(batch.num) if batch.num is not None else None,
        batch.bools,
        batch.texts,
    )
    try:
        # Django's connections bind parameters client-side (ClientCursor); a plain psycopg
        # Cursor binds them server-side, which is what sends binary parameters.
        with psycopg_cursor() as cursor:
            for cls in (_TextArray, _TimestamptzArray, _Float8Array):
                cursor.adapters.register_dumper(cls, _PackedArrayDumper)
            cursor.execute(_INGEST, params, binary=True)
            row = cursor.fetchone()
    except psycopg.Error as exc:
        if exc.sqlstate == "TS400":
            raise ApiError(400, "kind_mismatch", exc.diag.message_primary or str(exc)) from None
        raise
    assert row is not None
    return WriteResult(int(row[0]), int(row[1]), int(row[2]))


# --- binary arrays --------------------------------------------------------------------------
# Layout (array_send): ndim, has-null flag, element oid, then per dimension its length and lower
# bound; then per element a 4-byte length (-1 for NULL) and the element's binary form.

_HEAD = struct.Struct(">iiIii")
_LEN = struct.Struct(">i")
_TIMESTAMPTZ = psycopg.adapters.get_dumper(datetime, PyFormat.BINARY)


class _PackedArray(bytes):
    """A one-dimensional array without NULLs, already in binary form; `oid` is its array type."""

    oid = 0
    element_oid = 0

    @classmethod
    def head(cls, n: int) -> bytes:
        return _HEAD.pack(1, 0, cls.element_oid, n, 1)

    @classmethod
    def fixed8(cls, packed: bytes, n: int) -> _PackedArray:
        """From the concatenated 8-byte elements: interleave each with its length prefix."""
        buf = bytearray(12 * n)
        buf[3::12] = b"\x08" * n
        for j in range(8):
            buf[4 + j :: 12] = packed[j::8]
        return cls(cls.head(n) + buf)


class _TextArray(_PackedArray):
    oid = types["text"].array_oid
    element_oid = types["text"].oid

    @classmethod
    def pack(cls, values: list[str]) -> _TextArray:
        # Ids repeat (a batch has few devices and points): encode each distinct one once.
        chunks = {v: _LEN.pack(len(b)) + b for v in set(values) for b in (v.encode(),)}
        return cls(cls.head(len(values)) + b"".join(map(chunks.__getitem__, values)))


class _TimestamptzArray(_PackedArray):
    oid = types["timestamptz"].array_oid
    element_oid = types["timestamptz"].oid

    @classmethod
    def pack(cls, values: list[datetime]) -> _PackedArray:
        # psycopg's C dumper gives the 8-byte form (µs since 2000-01-01 UTC) of aware datetimes.
        dump = cast(Callable[[datetime], bytes], _TIMESTAMPTZ(datetime).dump)
        return cls.fixed8(b"".join(map(dump, values)), len(values))


class _Float8Array(_PackedArray):
    oid = types["float8"].array_oid
    element_oid = types["float8"].oid

    @classmethod
    def pack(cls, values: list[float | None]) -> _PackedArray | list[float | None]:
        try:
            doubles = array("d", cast(list[float], values))
        except TypeError:  # NULLs (a batch mixing kinds): psycopg's dumper handles them
            return values
        if doubles.itemsize != 8:  # pragma: no cover - every supported platform has 8
            return values
        if struct.pack("=d", 1.0) != struct.pack(">d", 1.0):
            doubles.byteswap()
        return cls.fixed8(doubles.tobytes(), len(values))


class _PackedArrayDumper(Dumper):
    """Passes a _PackedArray through, typed with its array oid."""

    format = pq.Format.BINARY

    def __init__(self, cls: type, context: AdaptContext | None = None) -> None:
        super().__init__(cls, context)
        self.oid = cls.oid  # type: ignore[attr-defined]

    def dump(self, obj: _PackedArray) -> bytes:
        return obj
