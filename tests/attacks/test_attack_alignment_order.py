"""Leak: the row order of alignment. The session's rows are numbered in an order both sides
share; if it were the order of the bank's table, a bank that keeps its table sorted by
outcome (defaulters first, or by date of default) would hand the holder its labels. The
holder, curious, scores each aligned enterprise by its position and measures how well that
ranks the bank's labels (AUC; 0.5 = nothing learnt). Mitigation: rows sorted by id
(``ORDER_BY_ID``), the same in every session."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import test_policy
from sklearn.metrics import roc_auc_score

from fedcredit.datasets import make_credit_data
from fedcredit.protocol import BankSession, InProcessChannel, PassiveParty, align
from fedcredit.protocol.alignment import math as alignment_math


def _holder_view_auc(bank, holder) -> float:
    """Align a label-sorted bank table; the holder ranks its session rows by position."""
    party = PassiveParty(holder, policy=test_policy())
    by_label = bank.sort_values("label", ascending=False, kind="stable")  # defaulters first
    session = BankSession(InProcessChannel(party), "align")
    align(session, by_label.index.tolist())
    held = party._sessions[session.id].aligned_ids  # exactly what the holder keeps
    labels = bank.loc[held, "label"].to_numpy()  # the truth, for scoring the attack only
    guess = -np.arange(len(held))  # earlier row -> more likely a defaulter
    return float(roc_auc_score(labels, guess))


@pytest.fixture(scope="module")
def tables():
    bank, holder = make_credit_data(rows=2000, seed=3, overlap=0.9)
    return bank.set_index("uscc"), holder.set_index("uscc")


def test_the_bank_table_order_leaks_labels_without_the_mitigation(tables, monkeypatch):
    monkeypatch.setattr(alignment_math, "ORDER_BY_ID", False)
    auc = _holder_view_auc(*tables)
    assert auc > 0.99  # the holder reads the labels off the row order


def test_rows_sorted_by_id_carry_no_label_order(tables):
    bank, holder = tables
    aucs = [_holder_view_auc(bank, holder), _holder_view_auc(bank.sample(frac=1, random_state=1),
                                                             holder)]
    assert aucs[0] == aucs[1]  # the bank's table order does not matter at all
    assert abs(aucs[0] - 0.5) < 0.1, aucs  # chance (USCCs carry no label)
