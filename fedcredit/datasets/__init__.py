"""Data for fedcredit: the USCC join key, synthetic party tables, and loaders.

- :mod:`.uscc`: the 18-character unified social credit code (GB 32100-2015) that keys both
  parties' tables; vectorised validation whose errors name the bad row.
- :mod:`.synthetic`: a seeded generator of a realistic bank table (labels and loan features)
  and holder table (public credit information, missing values included) with partial
  overlap and real signal in the holder's features; in memory up to 2 million rows, or
  written to CSV in chunks up to tens of millions.
- :mod:`.loaders`: a party's CSV table indexed by its ids, and the shared vertical split of
  the UCI default-of-credit-card-clients data.
"""
from .loaders import find_data_dir, load_csv_table, load_default_credit
from .schema import BANK_COLUMNS, BANK_FEATURE_LABELS, HOLDER_COLUMNS, HOLDER_FEATURE_LABELS
from .synthetic import make_credit_data, read_credit_data, write_credit_data
from .uscc import (
    USCC_ALPHABET,
    USCC_WEIGHTS,
    invalid_uscc_rows,
    is_valid_uscc,
    org_code_check_char,
    uscc_check_char,
    validate_uscc,
)

__all__ = [
    "BANK_COLUMNS",
    "BANK_FEATURE_LABELS",
    "HOLDER_COLUMNS",
    "HOLDER_FEATURE_LABELS",
    "USCC_ALPHABET",
    "USCC_WEIGHTS",
    "find_data_dir",
    "invalid_uscc_rows",
    "is_valid_uscc",
    "load_csv_table",
    "load_default_credit",
    "make_credit_data",
    "org_code_check_char",
    "read_credit_data",
    "uscc_check_char",
    "validate_uscc",
    "write_credit_data",
]
