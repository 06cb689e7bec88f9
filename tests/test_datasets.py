"""Tests of fedcredit.datasets: the USCC key, the synthetic tables and the loaders."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from fedcredit.datasets import (
    BANK_COLUMNS,
    HOLDER_COLUMNS,
    HOLDER_FEATURE_LABELS,
    invalid_uscc_rows,
    is_valid_uscc,
    load_csv_table,
    load_default_credit,
    make_credit_data,
    org_code_check_char,
    read_credit_data,
    uscc_check_char,
    validate_uscc,
    write_credit_data,
)
from fedcredit.datasets import loaders, synthetic
from fedcredit.datasets.schema import ENTERPRISE_TYPE_CODES, ENTERPRISE_TYPES
from fedcredit.errors import InvalidInput

# Huawei Technologies Co., Ltd., as published on its business licence
HUAWEI = "914403001922038216"


@pytest.fixture(scope="module")
def tables():
    """Three generation blocks (50,000 bank rows each), so block boundaries are crossed."""
    return make_credit_data(rows=120_001, seed=11, overlap=0.8)


# ------------------------------------------------------------------------------ USCC


def test_check_char_hand_computed():
    # values 9 1 4 4 0 3 0 0 1 9 2 2 0 3 8 2 1 times weights 1 3 9 27 19 26 16 17 20 29 25 13
    # 8 24 10 30 28 sum to 9+3+36+108+0+78+0+0+20+261+50+26+0+72+80+60+28 = 831;
    # 831 mod 31 = 25 and 31 - 25 = 6
    assert uscc_check_char(HUAWEI[:17]) == "6"
    # M = 21, A = 10, Y = 30, B = 11, F = 15, K = 19: the weighted sum is 2378, mod 31 = 22,
    # 31 - 22 = 9
    assert uscc_check_char("91350100MA2YBF1K0") == "9"
    # sum 0: (31 - 0) mod 31 = 0, the outer modulo matters
    assert uscc_check_char("0" * 17) == "0"
    # 'Y' (30) in position 1 alone: 31 - 30 = 1
    assert uscc_check_char("Y" + "0" * 16) == "1"
    for published in ("91330100716105852F", "91440300708461136T"):
        assert uscc_check_char(published[:17]) == published[17]


def test_org_code_check_char_hand_computed():
    # 1*3 + 9*7 + 2*9 + 2*10 + 0*5 + 3*8 + 8*4 + 2*2 = 164 = 14 * 11 + 10; 11 - 10 = 1
    assert org_code_check_char("19220382") == "1"
    assert org_code_check_char("00000006") == "X"  # 6*2 = 12, 11 - 1 = 10 -> X
    assert org_code_check_char("00000000") == "0"  # 11 - 0 = 11 -> 0
    # letters count A = 10 .. Z = 35: M A 2 Y B F 1 K = 22 10 2 34 11 15 1 20, so
    # 66 + 70 + 18 + 340 + 55 + 120 + 4 + 40 = 713 = 64 * 11 + 9 and 11 - 9 = 2
    assert org_code_check_char("MA2YBF1K") == "2"


@pytest.mark.parametrize("bad", ["9144030019220382", "1" * 18, "9144030019220382I", 17, None])
def test_check_char_refuses_malformed_input(bad):
    with pytest.raises(InvalidInput):
        uscc_check_char(bad)


@pytest.mark.parametrize("code, valid", [
    (HUAWEI, True),
    ("914403001922038217", False),   # wrong check character
    ("914403001922038216".lower(), True),  # digits only: lower() changes nothing
    ("91330100716105852f", False),   # lower-case check letter
    ("91350100MA2YBF1KI9", False),   # I is not in the alphabet
    ("91440300192203821", False),    # 17 characters
    (HUAWEI + "0", False),
    (" " + HUAWEI[1:], False),
    ("", False),
    (None, False),
    (float("nan"), False),
    (914403001922038216, False),     # a number, not a code
])
def test_is_valid_uscc(code, valid):
    assert is_valid_uscc(code) is valid


def test_inner_org_check_is_not_required():
    # an organisation-code check char that is wrong (7 instead of 1) with a correct outer one
    first17 = "9144030019220382" + "7"
    assert is_valid_uscc(first17 + uscc_check_char(first17))


def test_invalid_rows_over_input_types():
    codes = [HUAWEI, "x", None, "91330100716105852F", "914403001922038217"]
    expected = [1, 2, 4]
    for values in (codes, np.array(codes, dtype=object), pd.Series(codes, dtype="str"),
                   pd.Series(codes, dtype=object), pa.array(codes),
                   pd.Series(codes, index=[10, 20, 30, 40, 50], dtype="str")):
        assert invalid_uscc_rows(values).tolist() == expected
    assert invalid_uscc_rows(np.array([HUAWEI, "abc"])).tolist() == [1]
    assert invalid_uscc_rows([HUAWEI, 914403001922038216, b"914403001922038216"]).tolist() \
        == [1, 2]
    assert invalid_uscc_rows(pd.Series([1, 2, 3])).tolist() == [0, 1, 2]
    assert invalid_uscc_rows([]).tolist() == []
    assert invalid_uscc_rows(["9144030019220382é6"]).tolist() == [0]


def test_validate_names_first_bad_row_and_count():
    values = pd.Series([HUAWEI] * 5 + ["914403001922038217", HUAWEI, "Z" * 100])
    with pytest.raises(InvalidInput) as err:
        validate_uscc(values, "bank.csv, column uscc")
    message = str(err.value)
    assert "bank.csv, column uscc" in message
    assert "2 of 8 rows" in message
    assert "row 5 " in message
    assert "'914403001922038217'" in message and "expected '6'" in message
    with pytest.raises(InvalidInput, match=r"row 2 .*'Z{40}\.\.\.'"):
        validate_uscc([HUAWEI, HUAWEI, "Z" * 100], "holder.csv")
    validate_uscc([HUAWEI, "91330100716105852F"], "ok")  # no error


def test_invalid_rows_is_vectorised():
    codes = np.array([HUAWEI] * 300_000, dtype=object)
    codes[123_456] = HUAWEI[:-1] + "7"
    assert invalid_uscc_rows(codes).tolist() == [123_456]


# ------------------------------------------------------------------------- synthetic


def test_columns_and_labels(tables):
    bank, holder = tables
    assert list(bank.columns) == list(BANK_COLUMNS)
    assert list(holder.columns) == list(HOLDER_COLUMNS)
    assert set(HOLDER_FEATURE_LABELS) == set(HOLDER_COLUMNS)
    assert HOLDER_FEATURE_LABELS["tax_credit_rating"] == "Tax credit rating (纳税信用等级)"
    assert all(any("\u4e00" <= ch <= "\u9fff" for ch in label)
               for label in HOLDER_FEATURE_LABELS.values())


def test_generated_codes_are_valid_unique_and_consistent(tables):
    bank, holder = tables
    assert invalid_uscc_rows(bank["uscc"]).size == 0
    assert invalid_uscc_rows(holder["uscc"]).size == 0
    assert bank["uscc"].is_unique and holder["uscc"].is_unique
    shared = round(0.8 * 120_001)
    assert len(set(bank["uscc"]) | set(holder["uscc"])) == 2 * 120_001 - shared
    # the generator also gets the inner GB 11714 check character right
    sample = holder["uscc"].sample(2000, random_state=0)
    assert all(org_code_check_char(c[8:16]) == c[16] for c in sample)
    # position 2 is the entity type, positions 3-8 the registered region
    type_code = dict(zip(ENTERPRISE_TYPES, ENTERPRISE_TYPE_CODES))
    assert (holder["uscc"].str[1] == holder["enterprise_type"].astype(str).map(type_code)).all()
    assert (holder["uscc"].str[2:8] == holder["region_code"].astype(str)).all()
    assert (holder["uscc"].str[0] == "9").all()


def test_feistel_scramble_is_a_permutation():
    keys = synthetic._feistel_keys(5)
    out = synthetic._feistel(np.arange(0, 1_000_000, dtype=np.uint64), keys)
    assert np.unique(out).size == 1_000_000
    assert out.max() < 10 ** 8


def _assert_same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    # DataFrame.equals: same values (NaN == NaN) and dtypes; much faster than
    # assert_frame_equal on categorical columns
    assert list(a.columns) == list(b.columns)
    assert a.dtypes.equals(b.dtypes)
    assert a.equals(b)


def test_deterministic_for_a_seed():
    a_bank, a_holder = make_credit_data(rows=3000, seed=4, overlap=0.5)
    b_bank, b_holder = make_credit_data(rows=3000, seed=4, overlap=0.5)
    _assert_same(a_bank, b_bank)
    _assert_same(a_holder, b_holder)
    c_bank, _ = make_credit_data(rows=3000, seed=5, overlap=0.5)
    assert set(c_bank["uscc"]) != set(a_bank["uscc"])
    assert not c_bank["loan_amount"].equals(a_bank["loan_amount"])


@pytest.mark.parametrize("chunk_rows", [250_000, 7])
def test_write_gives_the_rows_of_make(tmp_path, chunk_rows):
    # two generation blocks; chunk_rows=7 writes block by block
    info = write_credit_data(tmp_path, rows=60_003, seed=3, overlap=0.37,
                             chunk_rows=chunk_rows)
    bank, holder = read_credit_data(tmp_path)
    made_bank, made_holder = make_credit_data(rows=60_003, seed=3, overlap=0.37)
    _assert_same(bank, made_bank)
    _assert_same(holder, made_holder)
    assert info["bank_rows"] == info["holder_rows"] == 60_003
    assert info["shared_rows"] == round(0.37 * 60_003)
    assert info["bank_defaults"] == int(made_bank["label"].sum())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bank.csv", "holder.csv"]


def test_csv_is_plain(tmp_path):
    write_credit_data(tmp_path, rows=1000, seed=1)
    with open(tmp_path / "holder.csv", encoding="ascii") as f:
        header, first = f.readline().rstrip("\n"), f.readline()
    assert header == ",".join(HOLDER_COLUMNS)
    assert '"' not in first and first.split(",")[0] == first[:18]


def test_failed_write_leaves_nothing_half_written(tmp_path, monkeypatch):
    (tmp_path / "bank.csv").write_text("old\n")
    calls = []

    def failing_write(self, data):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        original(self, data)

    original = synthetic._CsvAppender.write
    monkeypatch.setattr(synthetic._CsvAppender, "write", failing_write)
    with pytest.raises(OSError, match="disk full"):
        write_credit_data(tmp_path, rows=120_000, seed=0, chunk_rows=50_000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bank.csv"]
    assert (tmp_path / "bank.csv").read_text() == "old\n"


@pytest.mark.parametrize("overlap", [1.0, 0.8, 0.33, 0.001])
def test_overlap_fraction_is_honoured(overlap):
    bank, holder = make_credit_data(rows=4000, seed=2, overlap=overlap)
    assert len(bank) == len(holder) == 4000
    shared = bank["uscc"].isin(set(holder["uscc"]))
    assert shared.sum() == round(overlap * 4000)


def test_row_order_does_not_reveal_overlap(tables):
    bank, holder = tables
    in_bank = holder["uscc"].isin(bank["uscc"]).to_numpy()
    in_holder = bank["uscc"].isin(holder["uscc"]).to_numpy()
    for flags in (in_bank, in_holder):
        # every tenth of the file has about the overall share of shared enterprises
        tenths = [part.mean() for part in np.array_split(flags, 10)]
        assert max(abs(t - 0.8) for t in tenths) < 0.03
        assert not flags[: flags.sum()].all()  # shared ones are not simply first
    # and a shared enterprise does not sit on the same row in both files
    common = bank["uscc"].where(in_holder).dropna()
    same_row = holder["uscc"].reindex(common.index) == common
    assert same_row.mean() < 0.01


@pytest.mark.parametrize("seed", [0, 1])
def test_default_rate_is_realistic(seed):
    bank, _ = make_credit_data(rows=20_000, seed=seed)
    assert 0.02 <= bank["label"].mean() <= 0.08
    assert set(bank["label"].unique()) == {0, 1}


def test_missing_values_where_expected(tables):
    bank, holder = tables
    kind = holder["enterprise_type"]
    individual = holder[kind == "individual_business"]
    enterprise = holder[kind == "enterprise"]
    # individual businesses mostly have no provident-fund record; enterprises often do
    assert individual["provident_fund_headcount"].isna().mean() > 0.85
    assert enterprise["provident_fund_headcount"].isna().mean() < 0.6
    assert holder["gas_m3_mean_3m"].isna().mean() > 0.5
    young = holder["enterprise_age_years"] < 0.4
    assert young.sum() > 0 and holder.loc[young, "tax_credit_rating"].isna().all()
    assert holder.loc[holder["enterprise_age_years"] < 0.5, "electricity_kwh_mean_6m"] \
        .isna().all()
    assert holder["environmental_credit_rating"].isna().mean() > 0.8
    assert 0.0 < holder["tax_paid_last_year"].isna().mean() < 0.5
    # a record that does not exist in the source is missing, never a made-up zero
    no_insurance = holder["insured_headcount"].isna()
    assert holder.loc[no_insurance, "social_insurance_months_paid"].isna().all()
    assert bank["credit_line_utilisation"].isna().mean() > 0.1
    assert bank["deposit_balance"].isna().mean() > 0.05
    # flags and counts are never missing
    for frame, columns in ((bank, BANK_COLUMNS), (holder, HOLDER_COLUMNS)):
        for name, k in columns.items():
            if k in ("flag", "count", "id"):
                assert frame[name].notna().all(), name
    assert isinstance(holder["tax_credit_rating"].dtype, pd.CategoricalDtype)
    assert set(holder["tax_credit_rating"].dropna().unique()) == set("ABMCD")


def test_holder_features_carry_signal_the_bank_lacks(tables):
    bank, holder = tables
    joined = bank.merge(holder, on="uscc")
    rate = joined.groupby("tax_credit_rating", observed=True)["label"].mean()
    assert rate["A"] < rate["B"] < rate["C"] < rate["D"]
    assert joined.loc[joined["dishonest_debtor"] == 1, "label"].mean() \
        > 2 * joined["label"].mean()


@pytest.mark.parametrize("kwargs", [
    {"rows": 0}, {"rows": 1.5}, {"rows": True}, {"seed": -1}, {"seed": 1.0},
    {"overlap": 0.0}, {"overlap": 1.01}, {"overlap": "0.8"},
])
def test_bad_arguments_are_refused(kwargs):
    with pytest.raises(InvalidInput):
        make_credit_data(**{"rows": 1000, **kwargs})


def test_make_refuses_tables_too_big_for_memory(tmp_path):
    with pytest.raises(InvalidInput, match="write_credit_data"):
        make_credit_data(rows=2_000_001)
    with pytest.raises(InvalidInput):
        write_credit_data(tmp_path, rows=1000, chunk_rows=0)


def test_holder_lifts_bank_only_model():
    """Same rows, same split: the join must beat the bank's own columns by AUC > 0.02."""
    lgb = pytest.importorskip("lightgbm")
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    bank, holder = make_credit_data(rows=20_000, seed=7, overlap=0.8)
    joined = bank.merge(holder, on="uscc", how="inner")
    train, test = train_test_split(joined, test_size=0.3, stratify=joined["label"],
                                   random_state=0)

    def auc(columns):
        model = lgb.LGBMClassifier(n_estimators=200, learning_rate=0.05, num_leaves=31,
                                   verbose=-1, random_state=0)
        model.fit(train[columns], train["label"])
        return roc_auc_score(test["label"], model.predict_proba(test[columns])[:, 1])

    bank_only = [c for c in BANK_COLUMNS if c not in ("uscc", "label")]
    holder_only = [c for c in HOLDER_COLUMNS if c != "uscc"]
    bank_auc = auc(bank_only)
    joined_auc = auc(bank_only + holder_only)
    assert 0.6 < bank_auc < 0.8
    assert joined_auc - bank_auc > 0.02


# --------------------------------------------------------------------------- loaders


def _write(path, text):
    path.write_text(text)
    return path


def test_load_csv_table_indexes_by_string_ids(tmp_path):
    path = _write(tmp_path / "t.csv", "id,a\n007,1.5\n10,2\n")
    frame = load_csv_table(path, "id")
    assert frame.index.tolist() == ["007", "10"]
    assert frame.index.name == "id" and list(frame.columns) == ["a"]


def test_load_csv_table_names_first_duplicate(tmp_path):
    path = _write(tmp_path / "t.csv", "id,a\n1,0\n2,0\n3,0\n2,0\n1,0\n")
    with pytest.raises(InvalidInput, match=r"2 rows repeat .* row 3 .* as row 1"):
        load_csv_table(path, "id")


def test_load_csv_table_errors(tmp_path):
    with pytest.raises(InvalidInput, match="no column 'uscc'"):
        load_csv_table(_write(tmp_path / "a.csv", "id,a\n1,2\n"), "uscc")
    with pytest.raises(InvalidInput, match="no such file"):
        load_csv_table(tmp_path / "missing.csv", "id")
    with pytest.raises(InvalidInput, match="empty"):
        load_csv_table(_write(tmp_path / "e.csv", ""), "id")
    with pytest.raises(InvalidInput, match="row 1"):
        load_csv_table(_write(tmp_path / "n.csv", "id,a\n1,2\n,3\n"), "id")
    bad = _write(tmp_path / "u.csv", f"uscc,a\n{HUAWEI},1\n{HUAWEI[:-1]}7,2\n")
    with pytest.raises(InvalidInput, match=r"u\.csv, column uscc.*row 1"):
        load_csv_table(bad, "uscc", uscc=True)
    assert len(load_csv_table(bad, "uscc")) == 2  # without uscc=True ids are opaque


def _fake_default_credit(folder):
    folder.mkdir(parents=True)
    guest = "id,y," + ",".join(f"x{i}" for i in range(13)) + "\n"
    host = "id," + ",".join(f"x{i}" for i in range(10)) + "\n"
    for i, y in ((5, 1), (9, 0)):
        guest += f"{i},{y}," + ",".join("0.5" for _ in range(13)) + "\n"
        host += f"{i}," + ",".join("0.25" for _ in range(10)) + "\n"
    (folder / "default_credit_hetero_guest.csv").write_text(guest)
    (folder / "default_credit_hetero_host.csv").write_text(host)


def test_load_default_credit_from_dir_env_and_upward_search(tmp_path, monkeypatch):
    _fake_default_credit(tmp_path / "shared" / "data")
    guest, host = load_default_credit(tmp_path / "shared" / "data")
    assert guest.index.tolist() == ["5", "9"] and list(guest.columns)[:2] == ["y", "x0"]
    assert host.shape == (2, 10)
    monkeypatch.setenv("FEDCREDIT_DATA_DIR", str(tmp_path / "shared" / "data"))
    assert load_default_credit()[0].shape == (2, 14)
    monkeypatch.delenv("FEDCREDIT_DATA_DIR")
    work = tmp_path / "repo" / "notebooks"  # a shared/data folder beside the repository
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    assert load_default_credit()[1].shape == (2, 10)


def test_load_default_credit_reports_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("FEDCREDIT_DATA_DIR", str(tmp_path))
    with pytest.raises(InvalidInput, match="FEDCREDIT_DATA_DIR"):
        load_default_credit()
    monkeypatch.delenv("FEDCREDIT_DATA_DIR")
    # nowhere above the current directory or the package: the message says where it looked
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setattr(loaders, "__file__", str(tmp_path / "pkg" / "loaders.py"))
    with pytest.raises(InvalidInput, match=r"every shared/data folder.*cwd.*pkg"):
        load_default_credit()
    _fake_default_credit(tmp_path / "d")
    (tmp_path / "d" / "default_credit_hetero_host.csv").write_text("id,x0\n1,2\n")
    with pytest.raises(InvalidInput, match="columns"):
        load_default_credit(tmp_path / "d")


def test_load_default_credit_shared_data():
    try:
        guest, host = load_default_credit()
    except InvalidInput as err:
        pytest.skip(f"shared data not available: {err}")
    assert guest.shape == (30_000, 14) and host.shape == (30_000, 10)
    assert guest.index.equals(host.index) or set(guest.index) == set(host.index)
    assert 0.1 < guest["y"].mean() < 0.3
