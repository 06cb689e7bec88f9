"""Leak 6 (hetero LR), partial hardening: a bank that steers the holder's weights by adding
offsets to the masked gradient it hands back, or by setting a large learning rate.

The holder refuses an unmasked gradient outside ``(1 + GRADIENT_SLACK) sum_i |x_ij|`` (no
residuals in [-1, 1] give one) and a learning rate above ``policy.max_learning_rate``. An
offset inside the range still passes: only MPC (or a verifiable computation of the residuals)
would stop that, as docs/PRIVACY.md says.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fedcredit.crypto import generate_keypair
from fedcredit.errors import PolicyViolation
from fedcredit.protocol import BankSession, InProcessChannel, PassiveParty
from fedcredit.protocol.alignment.bank import align
from fedcredit.protocol.logistic import bank as lr_steps
from fedcredit.protocol.logistic import holder as lr_holder
from fedcredit.protocol.logistic import math as lc

from conftest import TEST_KEY_BITS, test_policy

N = 200


def _session(lr=0.1):
    rng = np.random.default_rng(0)
    holder = pd.DataFrame({"a": rng.normal(size=N), "b": rng.normal(size=N)},
                          index=[f"id{i:05d}" for i in range(N)])
    party = PassiveParty(holder, policy=test_policy())
    _, sk = generate_keypair(bits=TEST_KEY_BITS, insecure=True)
    s = BankSession(InProcessChannel(party), "lr", sk, workers=1)
    align(s, list(holder.index))
    lr_steps.lr_start(s, np.arange(N), learning_rate=lr, decay=0.0, l2=0.0)
    return s, party.find_session(s.id).state


def _step(s, step, masked, y, a=None):
    rows = np.arange(N)
    stats = lr_steps.lr_step(s, step, rows, list(masked), False)
    return lr_steps.lr_terms(s, step, np.zeros(N) if a is None else a, y, np.zeros((N, 1), dtype=np.int64), stats,
                             16, 5e-3, 8)


def _crafted(masked, st, target):
    """The bank adds to each masked value what makes the holder unmask ``target``."""
    scale = 2 ** (lc.COEF_BITS + lc.CHEB_BITS + lc.FEATURE_BITS)
    honest = np.array([int(v) - r for v, r in zip(masked, st.masks)]) / scale  # test oracle
    return [str(int(v) + int(round((t - h) * scale))) for v, t, h in zip(masked, target, honest)]


def test_extreme_honest_residuals_pass_the_range_check():
    s, st = _session()
    scale = 2 ** (lc.COEF_BITS + lc.CHEB_BITS + lc.FEATURE_BITS)
    seen = []
    # every residual near -1 (a = -12, y = 1), then near +1 (a = +12, y = 0)
    for step, (a, y) in enumerate([(-12.0, 1.0), (12.0, 0.0)]):
        res = _step(s, step, [] if step == 0 else res.masked, np.full(N, y), np.full(N, a))
        g = np.array([int(v) - r for v, r in zip(res.masked, st.masks)]) / scale
        seen.append(np.abs(g) / lc.gradient_bound(st.Xb))
    _step(s, 2, res.masked, np.ones(N))  # the holder applied both gradients
    assert st.opt.t == 2
    assert max(v.max() for v in seen) < 1.0


@pytest.mark.parametrize("check", [True, False])
def test_a_crafted_gradient_offset_is_refused(monkeypatch, check):
    monkeypatch.setattr(lr_holder, "CHECK_GRADIENT_RANGE", check)
    s, st = _session(lr=1.0)
    y = (np.arange(N) % 4 == 0).astype(float)
    res = _step(s, 0, [], y)
    bound = lc.gradient_bound(st.Xb)
    target = -3.0 * bound  # "move the holder's weights up, hard"
    before = st.opt.w.copy()
    masked = _crafted(res.masked, st, target)
    if check:
        with pytest.raises(PolicyViolation, match="honest residuals"):
            _step(s, 1, masked, y)
        assert np.array_equal(st.opt.w, before)
    else:
        _step(s, 1, masked, y)
        moved = st.opt.w - before
        print(f"\ncheck off: the crafted gradient (3x the honest bound) moved the holder's "
              f"weights by {moved.round(3).tolist()}")
        assert np.all(moved > 0.9)  # the bank chose the direction, the full learning rate


def test_a_learning_rate_above_the_policy_is_refused():
    with pytest.raises(PolicyViolation, match="max_learning_rate"):
        _session(lr=1.5)
    _session(lr=1.0)  # the cap itself is allowed
