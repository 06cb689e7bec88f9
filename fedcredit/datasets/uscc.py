"""The unified social credit code (统一社会信用代码, USCC, GB 32100-2015): the join key.

Both parties key their tables by the 18-character USCC, so a malformed code must stop the
job with an error that names the row, never be dropped silently (a silent drop would shrink
the intersection and bias every model trained on it). Layout of a code::

    9 1 350100 MA2YBF1K 9 X
    | | |      |        | +- 18: GB 32100 check character over positions 1-17
    | | |      |        +--- 17: GB 11714 check character of the organisation code
    | | |      +------------ 9-16: organisation code body (8 characters)
    | | +------------------- 3-8: administrative division code (GB/T 2260)
    | +--------------------- 2: entity type (1 enterprise, 2 individual business, 3 farmer coop)
    +----------------------- 1: registration authority (9 market regulation, 5 civil affairs, ...)

Codes use 31 characters (digits and capitals without I, O, Z, S, V). The position-18 check
is ``C18 = (31 - sum(v_i * w_i) mod 31) mod 31`` with ``w_i = 3**(i-1) mod 31``. Validity
here means length, alphabet and that check; the inner GB 11714 check character is not
required because registries still hold codes issued before it was enforced.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import InvalidInput

#: the 31 characters of GB 32100-2015, in value order (no I, O, Z, S, V)
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
#: weights of positions 1-17 in the GB 32100 check (3**i mod 31)
USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
#: weights of the 8 organisation-code body characters in the GB 11714 check
ORG_CODE_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
USCC_LENGTH = 18

# byte -> USCC value, -1 for bytes outside the alphabet (lower case included: codes are
# printed in capitals and a lower-case key would not join with the other party's)
_USCC_VALUE = np.full(256, -1, dtype=np.int16)
for _value, _char in enumerate(USCC_ALPHABET):
    _USCC_VALUE[ord(_char)] = _value
_USCC_CHARS = np.frombuffer(USCC_ALPHABET.encode("ascii"), dtype=np.uint8)
_WEIGHTS = np.asarray(USCC_WEIGHTS, dtype=np.int64)

# rows checked per slice by invalid_uscc_rows: bounds the temporary (rows x 18) matrices
_SLICE_ROWS = 1 << 20


def uscc_check_char(first17: str) -> str:
    """GB 32100-2015 check character (position 18) of the first 17 characters of a USCC.

    Parameters
    ----------
    first17 : str
        Positions 1-17 of the code, in the USCC alphabet.

    Returns
    -------
    str
        One character of :data:`USCC_ALPHABET`.

    Raises
    ------
    InvalidInput
        If ``first17`` is not a string of 17 characters of the alphabet.

    Examples
    --------
    >>> uscc_check_char("91440300192203821")
    '6'
    """
    if not isinstance(first17, str) or len(first17) != USCC_LENGTH - 1:
        raise InvalidInput(f"expected 17 USCC characters, got {_shown(first17)}")
    bad = [c for c in first17 if c not in USCC_ALPHABET]
    if bad:
        raise InvalidInput(f"{bad[0]!r} is not a USCC character (alphabet {USCC_ALPHABET})")
    total = sum(USCC_ALPHABET.index(c) * w for c, w in zip(first17, USCC_WEIGHTS))
    return USCC_ALPHABET[(31 - total % 31) % 31]


def org_code_check_char(body8: str) -> str:
    """GB 11714 check character of an 8-character organisation-code body.

    Digits count 0-9 and letters A-Z count 10-35; the check value is
    ``11 - sum(v_i * w_i) mod 11`` with weights (3, 7, 9, 10, 5, 8, 4, 2), written ``X`` for
    10 and ``0`` for 11.

    Examples
    --------
    >>> org_code_check_char("19220382")
    '1'
    """
    if not isinstance(body8, str) or len(body8) != 8 or not body8.isascii() \
            or not body8.isalnum() or body8 != body8.upper():
        raise InvalidInput(f"expected 8 digits or capital letters, got {_shown(body8)}")
    total = sum(int(c, 36) * w for c, w in zip(body8, ORG_CODE_WEIGHTS))
    value = 11 - total % 11
    return "X" if value == 10 else "0" if value == 11 else str(value)


def is_valid_uscc(code: Any) -> bool:
    """True if ``code`` is an 18-character string of the alphabet with a correct check char.

    The inner GB 11714 check character (position 17) is not checked; see the module notes.
    """
    return _reason(code) is None


def invalid_uscc_rows(values) -> np.ndarray:
    """Positions (0-based) of the entries of ``values`` that are not valid USCCs.

    Vectorised over slices of about a million rows (10 million codes take a few seconds).
    Missing values (None, NaN, pandas NA) and non-strings count as invalid.

    Parameters
    ----------
    values : sequence of str
        A list, numpy array, pandas Series or Index, or pyarrow array of codes. Positions
        are positional, whatever index a Series carries.

    Returns
    -------
    numpy.ndarray
        Sorted int64 positions of the invalid entries; empty if all are valid.
    """
    n = len(values)
    bad = [np.empty(0, dtype=np.int64)]
    for start in range(0, n, _SLICE_ROWS):
        stop = min(start + _SLICE_ROWS, n)
        strings = _to_arrow_strings(_slice(values, start, stop))
        bad.append(np.flatnonzero(~_valid_mask(strings)) + start)
    return np.concatenate(bad)


def validate_uscc(values, where: str) -> None:
    """Raise if any entry of ``values`` is not a valid USCC.

    Parameters
    ----------
    values : sequence of str
        Codes in row order (see :func:`invalid_uscc_rows`).
    where : str
        What the values are, for the message: a file and column, e.g. ``"bank.csv, column
        uscc"``.

    Raises
    ------
    InvalidInput
        Naming the first bad row (0-based position within the file or frame, the first data
        row being 0), its value cut to 40 characters, why it is invalid, and how many rows
        are bad.
    """
    bad = invalid_uscc_rows(values)
    if bad.size == 0:
        return
    first = int(bad[0])
    value = _item(values, first)
    raise InvalidInput(
        f"{where}: {bad.size} of {len(values)} rows are not valid unified social credit "
        f"codes (GB 32100-2015); first at row {first} (0-based): {_shown(value)}, "
        f"{_reason(value)}"
    )


def uscc_from_parts(prefix: np.ndarray, org_body: np.ndarray) -> np.ndarray:
    """Complete codes from their first 8 characters and 8-character organisation bodies.

    Adds the GB 11714 check character (position 17) and the GB 32100 check character
    (position 18), vectorised. Used by the synthetic generator.

    Parameters
    ----------
    prefix : numpy.ndarray
        ``(n, 8)`` uint8 ASCII: authority, entity type, 6-digit division code.
    org_body : numpy.ndarray
        ``(n, 8)`` uint8 ASCII, digits and capitals of the USCC alphabet.

    Returns
    -------
    numpy.ndarray
        ``(n, 18)`` uint8 ASCII codes.
    """
    n = prefix.shape[0]
    codes = np.empty((n, USCC_LENGTH), dtype=np.uint8)
    codes[:, :8] = prefix
    codes[:, 8:16] = org_body
    # GB 11714 values: digits 0-9, letters A-Z 10-35 (int(c, 36)), not the USCC values
    body = org_body.astype(np.int64)
    body_values = np.where(body >= ord("A"), body - ord("A") + 10, body - ord("0"))
    org = 11 - (body_values @ np.asarray(ORG_CODE_WEIGHTS, dtype=np.int64)) % 11
    codes[:, 16] = np.where(org == 10, ord("X"), np.where(org == 11, ord("0"), org + ord("0")))
    values = _USCC_VALUE[codes[:, :17]].astype(np.int64)
    if np.any(values < 0):
        raise InvalidInput("code parts contain characters outside the USCC alphabet")
    codes[:, 17] = _USCC_CHARS[(31 - (values @ _WEIGHTS) % 31) % 31]
    return codes


def _valid_mask(strings: pa.Array) -> np.ndarray:
    """Boolean mask of valid codes in an Arrow string array (nulls are invalid)."""
    n = len(strings)
    # byte length: any non-ASCII character is invalid anyway, so bytes == characters
    lengths = pc.fill_null(pc.binary_length(strings), 0).to_numpy(zero_copy_only=False)
    right_length = lengths == USCC_LENGTH
    valid = np.zeros(n, dtype=bool)
    if not right_length.any():
        return valid
    kept = pc.filter(strings, pa.array(right_length)).combine_chunks() \
        if isinstance(strings, pa.ChunkedArray) else pc.filter(strings, pa.array(right_length))
    # every kept string has 18 bytes, so the data buffer is a contiguous (k, 18) matrix
    offsets_type = np.int64 if pa.types.is_large_string(kept.type) else np.int32
    offsets = np.frombuffer(kept.buffers()[1], dtype=offsets_type)
    begin = int(offsets[kept.offset])
    k = len(kept)
    data = np.frombuffer(kept.buffers()[2], dtype=np.uint8)[begin:begin + k * USCC_LENGTH]
    values = _USCC_VALUE[data.reshape(k, USCC_LENGTH)]
    ok = np.all(values >= 0, axis=1)
    expected = (31 - (values[:, :17].astype(np.int64) @ _WEIGHTS) % 31) % 31
    ok &= values[:, 17] == expected
    valid[right_length] = ok
    return valid


def _to_arrow_strings(chunk) -> pa.Array:
    """Arrow string array of a slice; missing values and non-strings become nulls."""
    if isinstance(chunk, (pa.Array, pa.ChunkedArray)):
        if pa.types.is_string(chunk.type) or pa.types.is_large_string(chunk.type):
            return chunk
        return pa.nulls(len(chunk), pa.string())
    try:
        array = pa.array(chunk, from_pandas=True)
    except (pa.ArrowException, TypeError, ValueError):
        array = None
    if array is not None and (pa.types.is_string(array.type)
                              or pa.types.is_large_string(array.type)):
        return array
    if array is not None and pa.types.is_string_view(array.type):
        return array.cast(pa.large_string())
    if array is not None and not pa.types.is_null(array.type) \
            and not pa.types.is_binary(array.type):
        # a numeric or other typed column: no entry is a code
        return pa.nulls(len(chunk), pa.string())
    # mixed objects: keep the real strings, null the rest (ints, bytes, NaN, ...)
    objects = np.asarray(chunk, dtype=object)
    is_str = np.fromiter((isinstance(v, str) for v in objects), dtype=bool,
                         count=len(objects))
    kept = objects.copy()
    kept[~is_str] = None
    return pa.array(kept, type=pa.string())


def _slice(values, start: int, stop: int):
    if hasattr(values, "iloc"):
        return values.iloc[start:stop]
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values.slice(start, stop - start)
    return values[start:stop]


def _item(values, position: int):
    if hasattr(values, "iloc"):
        return values.iloc[position]
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values[position].as_py()
    return values[position]


def _reason(code: Any) -> str | None:
    """Why ``code`` is not a valid USCC, or None if it is."""
    if isinstance(code, np.str_):
        code = str(code)
    if not isinstance(code, str):
        return "missing" if _is_missing(code) else f"not a string but {type(code).__name__}"
    if len(code) != USCC_LENGTH:
        return f"length {len(code)}, expected {USCC_LENGTH}"
    for position, char in enumerate(code, start=1):
        if char not in USCC_ALPHABET:
            return f"character {char!r} at position {position} is not in the USCC alphabet"
    expected = uscc_check_char(code[:17])
    if code[17] != expected:
        return f"check character is {code[17]!r}, expected {expected!r}"
    return None


def _is_missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # array-likes have no single truth value
        return False


def _shown(value: Any) -> str:
    """repr of a value cut to 40 characters, for messages."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > 40:
        text = text[:40] + "..."
    return repr(text) if isinstance(value, str) else text
