"""Parquet rows, bounded before they are decoded: the footer first, then each batch's decoded size.

Parquet compresses and dictionary-encodes, so a 1 KB file can name gigabytes of text; nothing becomes a Python
object before its decoded size is known and within the limits the other formats meet line by line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from app.core.datasets.limits import Limits
from app.core.datasets.problems import DatasetProblem

Row = tuple[int, Any]
PARQUET_BATCH_ROWS = 1024


def read_parquet(path: Path, limits: Limits) -> Iterator[Row]:
    """Rows of a Parquet file: the footer is checked before any page is read, then every batch's decoded size
    before it becomes Python objects (a footer is the uploader's, and dictionary pages expand beyond it)."""
    number = 0
    try:
        meta = pq.ParquetFile(path).metadata
        batch_rows = parquet_batch_rows(meta, limits)
        # Text read as dictionaries stays as small as it is on disk until to_pylist, so its size can be known first.
        parquet = pq.ParquetFile(path, read_dictionary=_text_leaves(meta))
        dictionary_columns = _dictionary_columns(meta)
        if dictionary_columns:  # one value may repeat a million times: add them all up before reading rows
            _check_batches(parquet.iter_batches(batch_size=batch_rows, columns=dictionary_columns), limits)
        for batch in _checked(parquet.iter_batches(batch_size=batch_rows), limits):
            for piece in _pieces(batch, limits.batch_bytes):
                for row in piece.to_pylist():
                    number += 1
                    yield number, row
    except (pa.ArrowException, OSError) as error:
        raise DatasetProblem(
            "corrupt_parquet", f"The Parquet file cannot be read after row {number}: {error}.", line=number or None
        ) from None


def parquet_batch_rows(meta: pq.FileMetaData, limits: Limits) -> int:
    """Check the footer against the limits every format has; the rows per batch that keep a batch near batch_bytes."""
    _check_shape(meta, limits)
    expanded = 0
    for index in range(meta.num_row_groups):
        group = meta.row_group(index)
        expanded += group.total_byte_size
        widest = max((group.column(c).total_uncompressed_size for c in range(group.num_columns)), default=0)
        if max(group.total_byte_size, widest) > limits.max_row_bytes * max(group.num_rows, 1):
            raise _row_too_large(None)  # even spread evenly, its rows would pass the row limit
    if expanded > limits.max_total_bytes:
        raise _expands_too_much(expanded, limits)
    per_row = max(expanded // max(meta.num_rows, 1), 1)
    return max(1, min(PARQUET_BATCH_ROWS, limits.batch_bytes // per_row))


def _check_shape(meta: pq.FileMetaData, limits: Limits) -> None:
    """Rows, columns and nesting, all known from the footer alone."""
    if meta.num_rows > limits.max_rows:
        raise DatasetProblem("too_many_rows", f"The file has {meta.num_rows:,} rows, more than {limits.max_rows:,}; "
                             "split it or sample it down.")
    if meta.num_columns > limits.max_columns:
        raise DatasetProblem("too_many_columns", f"The file has {meta.num_columns:,} columns, more than "
                             f"{limits.max_columns:,}; keep only the columns the dataset needs.")
    deepest = max((_depth(field.type) for field in meta.schema.to_arrow_schema()), default=0)
    if deepest > limits.max_depth:
        raise DatasetProblem("too_deeply_nested", f"The file's columns nest more than {limits.max_depth} levels "
                             "deep; flatten them.")


def _depth(kind: pa.DataType) -> int:
    """How many list/struct/map levels a column type nests."""
    if kind.num_fields == 0:
        return 0
    return 1 + max(_depth(kind.field(i).type) for i in range(kind.num_fields))


def _text_leaves(meta: pq.FileMetaData) -> list[str]:
    """Paths of the string/binary leaf columns."""
    schema = meta.schema
    return [schema.column(i).path for i in range(len(schema)) if schema.column(i).physical_type == "BYTE_ARRAY"]


def _dictionary_columns(meta: pq.FileMetaData) -> list[str]:
    """Top-level columns with a dictionary-encoded leaf in some row group."""
    names = set()
    for index in range(meta.num_row_groups):
        group = meta.row_group(index)
        for c in range(group.num_columns):
            if group.column(c).has_dictionary_page:
                names.add(group.column(c).path_in_schema.split(".", 1)[0])
    return sorted(names)


def _check_batches(batches: Iterator[pa.RecordBatch], limits: Limits) -> None:
    """Run through batches only to check their decoded sizes."""
    for _ in _checked(batches, limits):
        pass


def _checked(batches: Iterator[pa.RecordBatch], limits: Limits) -> Iterator[pa.RecordBatch]:
    """Batches whose decoded size keeps each row and the running total within the limits."""
    total = before = 0
    for batch in batches:
        size, widest = _decoded(batch)
        total += size
        if widest > limits.max_row_bytes or size > limits.max_row_bytes * max(batch.num_rows, 1):
            raise _row_too_large(before + 1)
        if total > limits.max_total_bytes:
            raise _expands_too_much(total, limits)
        before += batch.num_rows
        yield batch


def _pieces(batch: pa.RecordBatch, budget: int) -> Iterator[pa.RecordBatch]:
    """The batch in slices of at most about `budget` decoded bytes (one row at least)."""
    if batch.num_rows <= 1 or _decoded(batch)[0] <= budget:
        yield batch
        return
    half = batch.num_rows // 2
    yield from _pieces(batch.slice(0, half), budget)
    yield from _pieces(batch.slice(half), budget)


def _decoded(data: pa.RecordBatch | pa.Array) -> tuple[int, int]:
    """(bytes, largest single value's bytes) of the data once decoded, counting every use of a dictionary value."""
    arrays = data.columns if isinstance(data, pa.RecordBatch) else [data]
    total = widest = 0
    for array in arrays:
        size, largest = _array_decoded(array)
        total, widest = total + size, max(widest, largest)
    return total, widest


def _array_decoded(array: pa.Array) -> tuple[int, int]:
    kind = array.type
    if pa.types.is_dictionary(kind) and _is_bytes(kind.value_type):
        return _sum_max(pc.take(pc.binary_length(array.dictionary), array.indices))
    if _is_bytes(kind):
        return _sum_max(pc.binary_length(array))
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_map(kind):
        return _decoded(array.flatten())
    if pa.types.is_struct(kind):
        parts = [_decoded(array.field(i)) for i in range(kind.num_fields)]
        return sum(p[0] for p in parts), max((p[1] for p in parts), default=0)
    return array.nbytes, 0


def _sum_max(lengths: pa.Array) -> tuple[int, int]:
    return int(pc.sum(lengths).as_py() or 0), int(pc.max(lengths).as_py() or 0)


def _is_bytes(kind: pa.DataType) -> bool:
    return (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind)
            or pa.types.is_large_binary(kind))


def _row_too_large(line: int | None) -> DatasetProblem:
    where = f"Row {line} or one of the next rows is" if line else "Its rows are"
    return DatasetProblem("row_too_large", f"{where} larger than the row limit once decompressed; each row "
                          "must be smaller (LORASTUDIO_DATASET_MAX_ROW_BYTES).", line=line)


def _expands_too_much(expanded: int, limits: Limits) -> DatasetProblem:
    return DatasetProblem("expands_too_much", f"The Parquet file expands to more than {expanded >> 20:,} MiB once "
                          f"decompressed, over the limit of {limits.max_total_bytes >> 20:,} MiB "
                          "(LORASTUDIO_MAX_UPLOAD_BYTES); split the dataset.")
