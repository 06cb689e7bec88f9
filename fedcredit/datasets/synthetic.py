"""A synthetic bank table and holder table keyed by valid, unique USCCs.

The tables imitate what the two parties hold: the bank (active party)
has loan outcomes and its own features, the credit-data holder (passive party) has public
credit information; a latent risk per enterprise drives both (see ``_model``), so the
holder's features measurably lift a bank-only model.

Layout, for ``rows`` = n and ``overlap`` = F: ``bank.csv`` has n enterprises; round(F * n) of
them are also among the n enterprises of ``holder.csv``; the holder's other enterprises are
unknown to the bank. Enterprises are made in fixed blocks of :data:`BLOCK_ROWS` bank rows,
each with its own random stream derived from ``(seed, block index)``, and rows are shuffled
within a block so that row order reveals nothing about the overlap. The output therefore
depends only on ``(rows, seed, overlap)``: not on ``chunk_rows``, and the in-memory
:func:`make_credit_data` gives exactly the rows that :func:`write_credit_data` writes.

USCC uniqueness does not rest on luck: every enterprise gets a global serial number, a
keyed Feistel permutation of ``[0, 10**8)`` turns it into the organisation-code body, and a
permutation never maps two serial numbers to the same body.
"""
from __future__ import annotations

import math
import numbers
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ..atomic import write_with
from ..errors import InvalidInput
from . import _model
from .schema import (
    BANK_COLUMNS,
    CATEGORIES,
    ENTERPRISE_TYPE_CODES,
    HOLDER_COLUMNS,
    HOLDER_FEATURE_LABELS,
    REGION_CODES,
    pandas_dtypes,
)
from .uscc import USCC_ALPHABET, USCC_LENGTH, uscc_from_parts, validate_uscc

__all__ = [
    "BLOCK_ROWS",
    "HOLDER_FEATURE_LABELS",
    "MAX_IN_MEMORY_ROWS",
    "MAX_ROWS",
    "make_credit_data",
    "read_credit_data",
    "write_credit_data",
]

#: bank rows per generation block (each block has its own random stream)
BLOCK_ROWS = 50_000
#: largest table :func:`make_credit_data` builds in memory; larger ones go to disk
MAX_IN_MEMORY_ROWS = 2_000_000
#: the organisation-code namespace (10**8 bodies) holds at most 2 * MAX_ROWS enterprises
MAX_ROWS = 50_000_000
BANK_FILE = "bank.csv"
HOLDER_FILE = "holder.csv"

_BODY_SPACE = 10 ** 8
_HALF = 10 ** 4  # the Feistel permutation works on two halves in [0, 10**4)
_FEISTEL_ROUNDS = 6
# firms registered after the 2015 reform got "MA"-series bodies instead of old org codes
_NEW_SERIES_MAX_AGE = 10.0


def make_credit_data(rows: int = 10_000, seed: int = 0,
                     overlap: float = 0.8) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Generate the bank and holder tables in memory.

    Parameters
    ----------
    rows : int
        Rows of each table, at most :data:`MAX_IN_MEMORY_ROWS` (use
        :func:`write_credit_data` beyond).
    seed : int
        Non-negative seed; the same arguments always give the same tables.
    overlap : float
        Fraction F in (0, 1] of the bank's enterprises that the holder also has.

    Returns
    -------
    bank : pandas.DataFrame
        ``uscc``, ``label`` (1 = default within the performance window) and the bank's
        features (:data:`schema.BANK_COLUMNS`).
    holder : pandas.DataFrame
        ``uscc`` and the holder's features (:data:`schema.HOLDER_COLUMNS`); missing values
        are NaN. Categorical columns have pandas ``category`` dtype in both tables.

    Raises
    ------
    InvalidInput
        For arguments out of range, including ``rows > MAX_IN_MEMORY_ROWS``.
    """
    _check_args(rows, seed, overlap)
    if rows > MAX_IN_MEMORY_ROWS:
        raise InvalidInput(
            f"make_credit_data builds tables in memory and stops at {MAX_IN_MEMORY_ROWS:,} "
            f"rows (got {rows:,}); use write_credit_data(out_dir, rows, ...) to write them "
            f"to CSV in chunks"
        )
    keys = _feistel_keys(seed)
    blocks = [_block(seed, b, rows, overlap, keys) for b in range(_n_blocks(rows))]
    return (_frame([bank for bank, _ in blocks], BANK_COLUMNS),
            _frame([holder for _, holder in blocks], HOLDER_COLUMNS))


def write_credit_data(out_dir, rows: int, seed: int = 0, overlap: float = 0.8,
                      chunk_rows: int = 250_000) -> dict:
    """Write ``out_dir/bank.csv`` and ``out_dir/holder.csv``, chunk by chunk.

    Memory stays bounded whatever ``rows`` is: about ``chunk_rows`` rows of each table are
    held at a time. Both files are written under temporary names and renamed into place
    only when both are complete, so a failure leaves no half-written ``bank.csv`` or
    ``holder.csv`` (existing files of those names are replaced on success).

    Parameters
    ----------
    out_dir : str or os.PathLike
        Directory to write to; created if missing.
    rows : int
        Rows of each table, 1 to :data:`MAX_ROWS`.
    seed, overlap
        As for :func:`make_credit_data`, which gives the same rows.
    chunk_rows : int
        Rows generated and appended per write, rounded up to whole blocks of
        :data:`BLOCK_ROWS`; changes memory use, never the output.

    Returns
    -------
    dict
        ``bank_path``, ``holder_path`` (str), ``bank_rows``, ``holder_rows``,
        ``shared_rows`` (enterprises in both), ``bank_defaults`` (rows with label 1),
        ``seed`` and ``overlap``.
    """
    _check_args(rows, seed, overlap)
    if not isinstance(chunk_rows, numbers.Integral) or isinstance(chunk_rows, bool) \
            or chunk_rows < 1:
        raise InvalidInput(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    final = {"bank": out / BANK_FILE, "holder": out / HOLDER_FILE}
    keys = _feistel_keys(seed)
    per_write = max(1, math.ceil(chunk_rows / BLOCK_ROWS))
    n_blocks = _n_blocks(rows)
    defaults = 0

    def write_both(bank_tmp: Path, holder_tmp: Path) -> None:
        nonlocal defaults
        with open(bank_tmp, "wb") as bank_file, open(holder_tmp, "wb") as holder_file:
            bank_csv = _CsvAppender(bank_file, BANK_COLUMNS)
            holder_csv = _CsvAppender(holder_file, HOLDER_COLUMNS)
            for first in range(0, n_blocks, per_write):
                blocks = [_block(seed, b, rows, overlap, keys)
                          for b in range(first, min(first + per_write, n_blocks))]
                bank = _concat([bank for bank, _ in blocks])
                defaults += int(bank["label"].sum())
                bank_csv.write(bank)
                holder_csv.write(_concat([holder for _, holder in blocks]))
                del blocks, bank
            for f in (bank_file, holder_file):  # both on disk before either is renamed
                f.flush()
                os.fsync(f.fileno())

    # The inner call renames bank.csv, then the outer one holder.csv; a failure before that
    # removes both temporaries and replaces neither file.
    write_with(final["holder"], lambda holder_tmp: write_with(
        final["bank"], lambda bank_tmp: write_both(bank_tmp, holder_tmp)))
    return {
        "bank_path": str(final["bank"]),
        "holder_path": str(final["holder"]),
        "bank_rows": rows,
        "holder_rows": rows,
        "shared_rows": _shared_before(rows, overlap),
        "bank_defaults": defaults,
        "seed": int(seed),
        "overlap": float(overlap),
    }


def read_credit_data(data_dir) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read the tables written by :func:`write_credit_data`, with the generator's dtypes.

    The USCC column is validated (:func:`~fedcredit.datasets.uscc.validate_uscc`), and
    region codes stay strings. Only for tables that fit in memory.

    Returns
    -------
    bank, holder : pandas.DataFrame
        Equal to what :func:`make_credit_data` returns for the same arguments.
    """
    tables = []
    for name, columns in ((BANK_FILE, BANK_COLUMNS), (HOLDER_FILE, HOLDER_COLUMNS)):
        path = Path(data_dir) / name
        if not path.is_file():
            raise InvalidInput(f"{path} does not exist; write it with write_credit_data")
        dtypes = pandas_dtypes(columns)
        frame = pd.read_csv(path, dtype={c: ("str" if k in ("id", "category") else dtypes[c])
                                         for c, k in columns.items()
                                         if k != "flag" and k != "count"})
        if list(frame.columns) != list(columns):
            raise InvalidInput(f"{path} has columns {list(frame.columns)}, "
                               f"expected {list(columns)}")
        validate_uscc(frame["uscc"], f"{path}, column uscc")
        tables.append(frame.astype(dtypes))
    return tables[0], tables[1]


# ---------------------------------------------------------------------------- blocks


def _block(seed: int, block: int, rows: int, overlap: float, keys: np.ndarray):
    """Bank and holder columns of one block (codes for categoricals), rows shuffled."""
    start = block * BLOCK_ROWS
    stop = min(start + BLOCK_ROWS, rows)
    n = stop - start
    shared = _shared_before(stop, overlap) - _shared_before(start, overlap)
    m = 2 * n - shared  # the block's enterprises: shared, bank-only, holder-only
    first_serial = 2 * start - _shared_before(start, overlap)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0, block)))
    population = _model.draw_population(rng, m)
    codes = _uscc_codes(population, first_serial, keys)

    bank_idx = rng.permutation(n)
    # holder: the shared enterprises (first in the block) plus the holder-only ones
    holder_idx = rng.permutation(np.concatenate([np.arange(shared), np.arange(n, m)]))
    bank_people = population.take(bank_idx)
    bank = {"uscc": codes[bank_idx], "label": bank_people.default.astype(np.int8)}
    bank.update(_model.bank_features(rng, bank_people))
    holder = {"uscc": codes[holder_idx]}
    holder.update(_model.holder_features(rng, population.take(holder_idx)))
    return bank, holder


def _uscc_codes(population, first_serial: int, keys: np.ndarray) -> np.ndarray:
    """(m, 18) uint8 codes: 9, entity type, region, organisation code, check characters."""
    m = len(population.age)
    serial = np.arange(first_serial, first_serial + m, dtype=np.uint64)
    body_number = _feistel(serial, keys)
    prefix = np.empty((m, 8), dtype=np.uint8)
    prefix[:, 0] = ord("9")  # registered with market regulation
    prefix[:, 1] = np.frombuffer("".join(ENTERPRISE_TYPE_CODES).encode(),
                                 dtype=np.uint8)[population.etype]
    regions = np.frombuffer("".join(REGION_CODES).encode(), dtype=np.uint8).reshape(-1, 6)
    prefix[:, 2:] = regions[population.region]
    # old organisation codes are 8 digits; "MA" + 6 base-31 characters afterwards. Both
    # are injective in body_number and the two series never coincide ("MA" vs digits).
    digits = np.empty((m, 8), dtype=np.uint8)
    rest = body_number.copy()
    for i in range(7, -1, -1):
        digits[:, i] = ord("0") + (rest % 10).astype(np.uint8)
        rest //= 10
    series = np.empty((m, 8), dtype=np.uint8)
    series[:, 0], series[:, 1] = ord("M"), ord("A")
    alphabet = np.frombuffer(USCC_ALPHABET.encode(), dtype=np.uint8)
    rest = body_number.copy()
    for i in range(7, 1, -1):
        series[:, i] = alphabet[(rest % 31).astype(np.int64)]
        rest //= 31
    new = (population.age < _NEW_SERIES_MAX_AGE)[:, None]
    return uscc_from_parts(prefix, np.where(new, series, digits))


def _feistel_keys(seed: int) -> np.ndarray:
    return np.random.SeedSequence(seed, spawn_key=(1,)).generate_state(
        _FEISTEL_ROUNDS, dtype=np.uint64)


def _feistel(x: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """A keyed permutation of [0, 10**8): balanced Feistel rounds on two decimal halves.

    Each round maps (L, R) to (R, (L + f(R)) mod 10**4), which is invertible whatever f
    is, so distinct inputs stay distinct.
    """
    left, right = x // _HALF, x % _HALF
    for key in keys:
        h = (right + key) * np.uint64(0x9E3779B97F4A7C15)  # wraps mod 2**64 on purpose
        h ^= h >> np.uint64(29)
        left, right = right, (left + h % np.uint64(_HALF)) % np.uint64(_HALF)
    return left * np.uint64(_HALF) + right


def _shared_before(k: int, overlap: float) -> int:
    """Shared enterprises among the first k bank rows (cumulative rounding: exact total)."""
    return int(math.floor(overlap * k + 0.5))


def _n_blocks(rows: int) -> int:
    return -(-rows // BLOCK_ROWS)


def _check_args(rows, seed, overlap) -> None:
    if not isinstance(rows, numbers.Integral) or isinstance(rows, bool) \
            or not 1 <= int(rows) <= MAX_ROWS:
        raise InvalidInput(f"rows must be an integer in [1, {MAX_ROWS:,}], got {rows!r}")
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0:
        raise InvalidInput(f"seed must be a non-negative integer, got {seed!r}")
    if not isinstance(overlap, numbers.Real) or isinstance(overlap, bool) \
            or not 0.0 < float(overlap) <= 1.0:
        raise InvalidInput(f"overlap must be a number in (0, 1], got {overlap!r}")


# ------------------------------------------------------------------- frames and CSV


def _concat(blocks: list[dict]) -> dict:
    if len(blocks) == 1:
        return blocks[0]
    return {name: np.concatenate([b[name] for b in blocks]) for name in blocks[0]}


def _frame(blocks: list[dict], columns: dict[str, str]) -> pd.DataFrame:
    data = _concat(blocks)
    dtypes = pandas_dtypes(columns)
    out = {}
    for name, kind in columns.items():
        values = data[name]
        if kind == "id":
            out[name] = pd.Series(values.view(f"S{USCC_LENGTH}").ravel().astype(str),
                                  dtype="str")
        elif kind == "category":
            out[name] = pd.Categorical.from_codes(values, dtype=dtypes[name])
        else:
            out[name] = values.astype(dtypes[name], copy=False)
    return pd.DataFrame(out)


class _CsvAppender:
    """Appends column dicts to an open binary file as CSV, header first."""

    def __init__(self, file, columns: dict[str, str]):
        self._file = file
        self._columns = columns
        self._categories = {name: pa.array(CATEGORIES[name], type=pa.string())
                            for name, kind in columns.items() if kind == "category"}
        # written by hand: Arrow quotes header names, and no value here needs quoting
        file.write((",".join(columns) + "\n").encode("ascii"))
        self._options = pacsv.WriteOptions(include_header=False, quoting_style="none")

    def write(self, data: dict) -> None:
        arrays = []
        for name, kind in self._columns.items():
            values = data[name]
            if kind == "id":
                n = values.shape[0]
                offsets = np.arange(0, (n + 1) * USCC_LENGTH, USCC_LENGTH, dtype=np.int32)
                arrays.append(pa.StringArray.from_buffers(
                    n, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(values))))
            elif kind == "category":
                codes = pa.array(values.astype(np.int32), mask=values < 0)
                arrays.append(pc.take(self._categories[name], codes))
            else:
                arrays.append(pa.array(values, from_pandas=True))
        pacsv.write_csv(pa.table(arrays, names=list(self._columns)), self._file,
                        self._options)
