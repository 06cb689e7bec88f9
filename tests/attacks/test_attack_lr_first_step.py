"""Leak 2: the holder reads the bank's default rate, its columns' sums over the defaulters and
the defaulter set itself from hetero LR's first gradient (docs/PRIVACY.md).

The curious holder runs its honest code and logs what that code computes anyway: per step, the
batch rows, its own quantised features and its gradient unmasked with its own masks (exact
integers). From w_b = 0 each row's fixed-point residual is ``D0 - y_i 2^32`` with one unknown
``D0``, so the gradient of column j is ``R_j = D0 X_j - 2^32 S_j`` (``X_j`` its column sum,
``S_j`` its sum over the batch's defaulters): ``D0`` follows from any column modulo 2^32 and
must fit every other column, then each ``S_j`` is exact, and an integer program over the batch
finds the defaulters. The bank's warm start (``warm_start="bank"``, the default) leaves no
``D0`` that fits, and the attack recovers nothing.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import Bounds, LinearConstraint, milp

from fedcredit.models import HeteroLogisticRegression
from fedcredit.protocol import PassiveParty
from fedcredit.protocol.logistic import holder as lr_holder
from fedcredit.protocol.logistic import math as lc

from conftest import TEST_KEY_BITS, test_policy

SHIFT = lc.COEF_BITS + lc.CHEB_BITS  # one label moves a fixed-point residual by 2^SHIFT
M = 1 << SHIFT
ROWS, BATCH = 900, 128


def _log_holder_gradients(monkeypatch):
    """What the holder's own apply_gradient computes, kept: (rows, X_int, exact gradients)."""
    log = []
    original = lr_holder.HolderLR.apply_gradient

    def curious(self, masked):
        if self.masks is not None and len(masked) == len(self.masks):
            raw = [int(v) - r for v, r in zip(masked, self.masks)]
            log.append((self.batch.copy(), self.Xbi.copy(), raw, len(self.train_rows),
                        list(self.aligned_ids)))
        return original(self, masked)

    monkeypatch.setattr(lr_holder.HolderLR, "apply_gradient", curious)
    return log


def _solve_d0(R: list[int], Xsum: list[int]) -> list[int]:
    """Every D0 in [0, 2^SHIFT] with D0 * X_j = R_j (mod 2^SHIFT) for all columns j."""
    val = [((x & -x).bit_length() - 1) if x else SHIFT for x in Xsum]
    j0 = int(np.argmin(val))
    v = val[j0]
    if v > 16 or R[j0] % (1 << v):
        return []
    mod = 1 << (SHIFT - v)
    base = (R[j0] >> v) * pow(Xsum[j0] >> v, -1, mod) % mod
    cands = [base + k * mod for k in range(1 << v)]
    return [d for d in cands if all((d * x - r) % M == 0 for x, r in zip(Xsum, R))]


def _defaulter_set(X: np.ndarray, S: np.ndarray) -> tuple[np.ndarray | None, bool]:
    """A 0/1 vector z with X^T z = S (integer program), and whether it is the only one."""
    b = len(X)
    cons = [LinearConstraint(X.T.astype(float), S.astype(float), S.astype(float))]
    r = milp(np.zeros(b), constraints=cons, integrality=np.ones(b), bounds=Bounds(0, 1))
    if r.x is None:
        return None, False
    z = np.rint(r.x).astype(int)
    cut = LinearConstraint(np.where(z == 1, -1.0, 1.0)[None, :], 1 - z.sum(), np.inf)
    again = milp(np.zeros(b), constraints=cons + [cut], integrality=np.ones(b),
                 bounds=Bounds(0, 1))
    return z, again.x is None


def _attack(log, step: int = 0) -> dict:
    rows, Xi, R, n_train, _ = log[step]
    Xsum = [int(v) for v in Xi.astype(object).sum(axis=0)]
    found = _solve_d0(R, Xsum)
    if len(found) != 1:  # best effort: D0 from the first odd column alone
        j0 = next((j for j, x in enumerate(Xsum) if x % 2), 0)
        d0 = R[j0] * pow(Xsum[j0], -1, M) % M if Xsum[j0] % 2 else 0
        guess = np.array([(d0 * x - r) // M for x, r in zip(Xsum, R)], dtype=np.int64)
        return {"solutions": len(found), "rate": d0 / M, "sums": None, "guess": guess,
                "set": None}
    d0 = found[0]
    num = [d0 * x - r for x, r in zip(Xsum, R)]
    S = np.array([v // M for v in num], dtype=np.int64)
    z, unique = _defaulter_set(Xi, S)
    return {"solutions": 1, "rate": d0 / M, "count": round(d0 / M * n_train), "sums": S,
            "rows": rows, "set": z, "unique": unique}


def _run(small_credit, monkeypatch, warm_start):
    bank, y, holder = small_credit
    bank, y = bank.iloc[:ROWS], y[:ROWS]
    aligned = bank.index.isin(holder.index)
    bank, y = bank[aligned], y[aligned]  # the bank trains on the enterprises both have
    log = _log_holder_gradients(monkeypatch)
    party = PassiveParty(holder, policy=test_policy())
    HeteroLogisticRegression(max_iter=1, batch_size=BATCH, warm_start=warm_start,
                             key_bits=TEST_KEY_BITS, insecure_key=True, verbose=False,
                             n_jobs=2).fit(bank, y, holder=party)
    monkeypatch.undo()
    assert len(log) >= ROWS // BATCH - 2
    later = [_attack(log, k)["solutions"] for k in range(1, len(log))]
    assert later == [0] * len(later)  # after the first step the bank's weights moved anyway
    rows, Xi, ids = log[0][0], log[0][1], log[0][4]
    labels = pd.Series(y, index=bank.index).loc[[ids[r] for r in rows]].to_numpy().astype(int)
    truth = {"rate": float(y.mean()), "count": int(y.sum()), "set": labels,  # for scoring only
             "sums": Xi[labels == 1].sum(axis=0), "column_sums": Xi.sum(axis=0)}
    return _attack(log), truth


def test_first_step_reveals_default_rate_label_sums_and_defaulters_without_warm_start(
        small_credit, monkeypatch):
    got, truth = _run(small_credit, monkeypatch, warm_start=None)
    assert got["solutions"] == 1
    err = abs(got["rate"] - truth["rate"])
    exact = int((got["sums"] == truth["sums"]).sum())
    hit = int((got["set"] == truth["set"]).all())
    print(f"\nwarm start off: default rate {got['rate']:.6f} vs {truth['rate']:.6f} "
          f"(error {err:.2e}), count {got['count']} vs {truth['count']}; exact defaulter sums "
          f"{exact} of {len(truth['sums'])} columns; defaulter set of the {len(got['rows'])}-row "
          f"batch exact: {bool(hit)} ({int(truth['set'].sum())} defaulters, "
          f"unique: {got['unique']})")
    assert err < 1e-3 and got["count"] == truth["count"]  # the count exactly
    assert exact == len(truth["sums"])
    assert hit and got["unique"]


def test_bank_warm_start_leaves_the_holder_nothing_to_solve(small_credit, monkeypatch):
    got, truth = _run(small_credit, monkeypatch, warm_start="bank")
    # columns that are zero over the batch have a zero defaulter sum the holder knows anyway
    informative = truth["column_sums"] != 0
    exact = int((got["guess"] == truth["sums"])[informative].sum())
    err = abs(got["rate"] - truth["rate"])
    print(f"\nwarm start on: {got['solutions']} residual constants fit the first gradient; "
          f"best-effort guess: default rate error {err:.3f}, exact defaulter sums {exact} of "
          f"{int(informative.sum())} non-zero columns, defaulter set not solvable")
    assert got["solutions"] == 0 and got["sums"] is None and got["set"] is None
    assert exact == 0 and err > 1e-3
