"""``fedcredit.simulation.run`` without a held-out split: the model's own alignment is the
only PSI, and the summary still says how many enterprises were aligned and trained on."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import TEST_KEY_BITS

from fedcredit.simulation import SimulationConfig, run


@pytest.mark.parametrize("model", ["secureboost", "lr", "woe"])
def test_no_test_split_trains_on_every_aligned_row_and_reports_them(tmp_path, small_credit,
                                                                    model):
    bank, y, holder = small_credit
    frame = bank.iloc[:900].assign(label=y[:900])
    frame.reset_index().to_csv(tmp_path / "b.csv", index=False)
    served = holder.iloc[::2]  # the holder serves half of the enterprises
    served.reset_index().to_csv(tmp_path / "h.csv", index=False)
    shared = int(np.isin(frame.index, served.index).sum())
    cfg = SimulationConfig(str(tmp_path / "b.csv"), str(tmp_path / "h.csv"), "uscc", "label",
                           test_size=0, model=model, trees=2, depth=2, bins=8,
                           key_bits=TEST_KEY_BITS, insecure_key=True, he_scheme="ou",
                           verbose=False, n_jobs=1, json_out=str(tmp_path / "s.json"))
    summary = run(cfg)
    assert 0 < shared < 900
    assert summary["rows_bank"] == 900
    assert summary["rows_aligned"] == summary["rows_train"] == shared
    assert summary["rows_test"] == 0 and summary["auc"] is None
    assert summary["align_seconds"] > 0 and summary["fit_seconds"] > 0
    assert json.loads((tmp_path / "s.json").read_text())["rows_aligned"] == shared
