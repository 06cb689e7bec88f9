"""Loaders for the parties' CSV tables and for the shared public data set.

Each party reads its own table with :func:`load_csv_table`: the id column becomes a string
index (ids are keys, never numbers: leading zeros and 18-digit USCCs must survive), and a
duplicate or missing id is an error naming its row, because alignment by id would otherwise
pair one party's row with the wrong record of the other.

:func:`load_default_credit` reads the vertical split of the UCI "default of credit card
clients" data (the public benchmark split: guest = bank with the label, host = holder) from
a data directory.
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from ..errors import InvalidInput
from ..memory import release_freed_memory
from .uscc import validate_uscc

__all__ = ["DATA_DIR_ENV", "DEFAULT_CREDIT_FILES", "find_data_dir", "load_csv_table",
           "load_default_credit"]

#: environment variable naming the shared data directory
DATA_DIR_ENV = "FEDCREDIT_DATA_DIR"
#: file names of the guest (bank side, with labels) and host (holder side) tables
DEFAULT_CREDIT_FILES = ("default_credit_hetero_guest.csv", "default_credit_hetero_host.csv")
_GUEST_COLUMNS = ["y"] + [f"x{i}" for i in range(13)]
_HOST_COLUMNS = [f"x{i}" for i in range(10)]


def load_csv_table(path, id_column: str, *, uscc: bool = False) -> pd.DataFrame:
    """Read one party's CSV table, indexed by its id column.

    Parameters
    ----------
    path : str or os.PathLike
        The CSV file; its first line is the header.
    id_column : str
        Column holding the record ids; read as strings and used as the index.
    uscc : bool
        Also require every id to be a valid unified social credit code
        (:func:`~fedcredit.datasets.uscc.validate_uscc`).

    Returns
    -------
    pandas.DataFrame
        The other columns, indexed by the ids (dtype ``str``, index name ``id_column``).

    Raises
    ------
    InvalidInput
        If the file is missing or empty, has no ``id_column``, or an id is missing,
        repeated (naming the first repeated row, 0-based among the data rows) or, with
        ``uscc=True``, not a valid USCC.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidInput(f"{path}: no such file")
    try:
        header = pd.read_csv(path, nrows=0).columns
    except pd.errors.EmptyDataError:
        raise InvalidInput(f"{path}: the file is empty (no header line)") from None
    if id_column not in header:
        raise InvalidInput(f"{path}: no column {id_column!r} (columns: {list(header)})")
    frame = pd.read_csv(path, dtype={id_column: "str"})
    ids = frame[id_column]
    missing = ids.isna().to_numpy().nonzero()[0]
    if missing.size:
        raise InvalidInput(f"{path}: {missing.size} rows have no {id_column}; first at row "
                           f"{missing[0]} (0-based, the first data row is 0)")
    if uscc:
        validate_uscc(ids, f"{path}, column {id_column}")
    repeated = ids.duplicated(keep="first").to_numpy().nonzero()[0]
    if repeated.size:
        row = int(repeated[0])
        earlier = int((ids.iloc[:row] == ids.iloc[row]).to_numpy().nonzero()[0][0])
        raise InvalidInput(
            f"{path}: {repeated.size} rows repeat an earlier {id_column}; first at row {row} "
            f"(0-based, the first data row is 0), same {id_column} as row {earlier}"
        )
    frame = frame.set_index(id_column)
    release_freed_memory()  # the parser's buffers: ~130 MB per million rows of 20 columns
    return frame


def find_data_dir(data_dir=None) -> Path:
    """The directory holding the shared data files (see :func:`load_default_credit`)."""
    if data_dir is not None:
        return _require_files(Path(data_dir), f"data_dir={str(data_dir)!r}")
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return _require_files(Path(env), f"${DATA_DIR_ENV}={env!r}")
    looked = []
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        for folder in (start, *start.parents):
            for candidate in (folder / "shared" / "data", folder.parent / "shared" / "data"):
                if candidate in looked:
                    continue
                looked.append(candidate)
                if all((candidate / name).is_file() for name in DEFAULT_CREDIT_FILES):
                    return candidate
    raise InvalidInput(
        f"could not find {' and '.join(DEFAULT_CREDIT_FILES)}: set ${DATA_DIR_ENV} or pass "
        f"data_dir; looked in every shared/data folder (and each parent's sibling shared/data) "
        f"above the current directory "
        f"({Path.cwd()}) and above the package ({Path(__file__).resolve().parent}), "
        f"{len(looked)} places, none had both files"
    )


def load_default_credit(data_dir=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Load the vertical split of the UCI "default of credit card clients" data.

    Parameters
    ----------
    data_dir : str or os.PathLike, optional
        Directory holding ``default_credit_hetero_guest.csv`` and
        ``default_credit_hetero_host.csv``. If omitted: ``$FEDCREDIT_DATA_DIR``, else the
        first folder ``shared/data`` holding both files in, or beside, the current
        directory or one of its parents, and then the same from the installed package.

    Returns
    -------
    guest : pandas.DataFrame
        The bank side: label ``y`` (0/1) and ``x0`` .. ``x12``, indexed by ``id`` (str).
    host : pandas.DataFrame
        The holder side: ``x0`` .. ``x9``, indexed by ``id`` (str).

    Raises
    ------
    InvalidInput
        If the files cannot be found (naming where it looked) or do not have the expected
        columns or unique ids.
    """
    folder = find_data_dir(data_dir)
    guest_path, host_path = (folder / name for name in DEFAULT_CREDIT_FILES)
    guest = load_csv_table(guest_path, "id")
    host = load_csv_table(host_path, "id")
    for path, frame, expected in ((guest_path, guest, _GUEST_COLUMNS),
                                  (host_path, host, _HOST_COLUMNS)):
        if list(frame.columns) != expected:
            raise InvalidInput(f"{path}: columns {list(frame.columns)}, expected "
                               f"{['id'] + expected}")
    if not guest["y"].isin([0, 1]).all():
        raise InvalidInput(f"{guest_path}: column y must hold only 0 and 1")
    return guest, host


def _require_files(folder: Path, source: str) -> Path:
    missing = [name for name in DEFAULT_CREDIT_FILES if not (folder / name).is_file()]
    if missing:
        raise InvalidInput(f"{source}: {folder} has no {' or '.join(missing)}")
    return folder
