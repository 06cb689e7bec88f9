"""The holder's state and steps of hetero logistic regression, and scoring by partial score.

The protocol and what each message reveals are described on
:class:`fedcredit.models.HeteroLogisticRegression`. Per session the holder keeps its own
weights in the clear (it needs ``u_i = x_i . w`` to evaluate its half of the sigmoid
expansion) and learns its own gradient, summed over each mini-batch; it never sees a label,
a residual or a bank value: everything it computes on is encrypted under the bank's key.
"""
from __future__ import annotations

import itertools
import secrets
import uuid
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd

from ...binning import FeaturePrep
from ...crypto import polynomial_partials
from ...errors import InvalidInput, PolicyViolation, ProtocolError, ResourceLimit
from ..channel import Caller
from ..context import HolderContext
from ..hooks import StoredModel, model_columns
from ..session import Session
from ..timing import Stopwatch
from ..wire import flags_to_bytes, increasing_rows, rows_from_bytes
from ..woe.holder import load_binning
from ..woe.math import final_bins
from . import math as lc
from . import messages as m

OPERATIONS = ("lr_start", "lr_step", "lr_partials", "lr_finish", "lr_score")

KIND = "hetero_lr"
MAX_STEPS = 1_000_000
#: mitigations with a switch, for the attack tests that show them off (tests/attacks/):
#: refuse an unmasked gradient no honest residuals give (leak 6) ...
CHECK_GRADIENT_RANGE = True
#: ... and send plain LR's holder coefficients to the bank (False: leak 5)
REVEAL_STANDARD_COEFFICIENTS = False


class HolderLR:
    """State of one LR training session on the holder."""

    def __init__(self, core: HolderContext, session: Session, msg: m.LrStart):
        self.core, self.session = core, session
        self.pk = session.key
        feats = core.aligned_features(session)
        self.n_aligned = len(feats)
        rows = rows_from_bytes(msg.rows, self.n_aligned, "training rows")
        if len(np.unique(rows)) != len(rows):  # a repeated row would count twice to a floor
            raise InvalidInput("training rows must be distinct")
        if len(rows) < core.policy.min_node_samples:
            raise PolicyViolation("too few training rows for the holder's policy")
        self.frac_bits = int(msg.frac_bits) or lc.FEATURE_BITS
        if not 4 <= self.frac_bits <= 20:
            raise InvalidInput("frac_bits must lie in [4, 20]")
        self.encoding = msg.encoding or "standard"
        if self.encoding == "standard":
            self.prep = FeaturePrep().fit(feats.iloc[rows])
            self.names = self.prep.output_names(publish_levels=False)
            self.spec = {"encoding": "standard", "prep": self.prep.to_dict()}
        elif self.encoding == "woe":
            self.spec = woe_spec(core, session, msg)
            self.names = model_columns(self.spec)
            core.require_columns(session, self.names, f"WOE binning {msg.binning_id!r}")
        else:
            raise InvalidInput(f"unknown encoding {msg.encoding!r}")
        self.X = encode(self.spec, feats, self.frac_bits)  # all aligned rows, quantised
        self.Xi = lc.to_fixed(self.X, self.frac_bits)
        self.aligned_ids = list(feats.index)
        # how an enterprise without data (or consent) is encoded
        nothing = pd.DataFrame({c: pd.Series([None], dtype=object) for c in feats.columns},
                               index=feats.index[:1])
        self.X_missing = encode(self.spec, nothing, self.frac_bits)[0]
        self.Xi_missing = lc.to_fixed(self.X_missing, self.frac_bits)
        self.Xb, self.Xbi = self.X[:0], self.Xi[:0]  # the open step's rows
        self.train_rows = rows
        self.opt = lc.Adam(np.zeros(self.X.shape[1]), msg.learning_rate, msg.decay)
        self.l2 = float(msg.l2)
        if not (0 < self.opt.lr <= 10 and 0 <= self.opt.decay <= 100 and 0 <= self.l2 <= 100):
            raise InvalidInput("learning_rate, decay or l2 out of range")
        if self.opt.lr > core.policy.max_learning_rate:  # a big step amplifies any steering
            raise PolicyViolation(f"learning_rate {self.opt.lr:g} is above the holder's "
                                  f"max_learning_rate of {core.policy.max_learning_rate:g}")
        self.step_no = -1
        self.batch = np.zeros(0, dtype=np.int64)  # the open step's rows (none before step 0)
        self.t = np.zeros(0)
        self.masks: list[int] | None = None
        self.model: StoredModel | None = None
        self.watch = Stopwatch()
        #: fraction bits of the residuals in the gradients it is handed back (a chain of
        #: several holders has more: :mod:`fedcredit.protocol.lr_chain`)
        self.residual_bits = lc.COEF_BITS + lc.CHEB_BITS
        self.chain = None  # with several holders: its place in the chain (lr_chain.holder)

    @property
    def own_rows(self) -> int:
        """The open batch's rows this holder serves (its audit counts these, not the gaps)."""
        return int((self.batch >= 0).sum())

    @property
    def x_bits(self) -> int:
        return int(np.abs(self.Xi).max()).bit_length() if self.Xi.size else 1

    # -- per step -----------------------------------------------------------------------
    def apply_gradient(self, masked: list[str]) -> None:
        if self.masks is None:
            if masked:
                raise ProtocolError("a gradient arrived before any partial sums were sent")
            return
        if len(masked) != len(self.masks):
            raise ProtocolError(f"expected {len(self.masks)} gradient values, got {len(masked)}")
        try:
            raw = np.array([int(v) - r for v, r in zip(masked, self.masks)], dtype=np.float64)
        except (ValueError, TypeError, OverflowError):
            raise InvalidInput("masked gradient values must be decimal integers of the "
                               "slot's size") from None
        total = raw / 2.0 ** (self.residual_bits + self.frac_bits)
        if CHECK_GRADIENT_RANGE and np.any(np.abs(total) > lc.gradient_bound(self.Xb)):
            # an honest bank's residuals lie in [-1, 1]: this gradient was not made of them
            raise PolicyViolation("the unmasked LR gradient is outside the range honest "
                                  "residuals allow (a crafted offset?)")
        grad = total / len(self.batch) + self.l2 * self.opt.w
        self.opt.step(grad)
        self.masks = None

    def step(self, msg: m.LrStep) -> m.LrStats:
        if msg.step != self.step_no + 1 or msg.step >= MAX_STEPS:
            raise ProtocolError(f"LR step {msg.step} out of order (expected {self.step_no + 1})")
        self.apply_gradient(list(msg.masked_gradient))
        change = self.opt.new_epoch() if msg.new_epoch else 0.0
        rows = rows_from_bytes(msg.rows, self.n_aligned, "batch rows")
        if len(np.unique(rows)) != len(rows):  # a repeated row would count twice to the floor
            raise InvalidInput("batch rows must be distinct")
        floor = max(self.core.policy.min_node_samples, 2 * self.X.shape[1] + 2)
        if len(rows) < floor:
            raise PolicyViolation(f"a batch of {len(rows)} rows is below the holder's floor of "
                                  f"{floor} (min_node_samples, and twice its features)")
        if not np.isin(rows, self.train_rows).all():
            raise InvalidInput("batch rows must be training rows")
        gaps = increasing_rows(msg.unserved, len(rows) + len(msg.unserved) // 4,
                               "unserved batch positions")
        self.step_no = msg.step
        # the batch in the bank's order: its own rows, and (several holders, align="any")
        # -1 at the positions of enterprises another holder serves and it does not
        self.batch = np.full(len(rows) + len(gaps), -1, dtype=np.int64)
        mine = np.setdiff1d(np.arange(len(self.batch)), gaps)
        self.batch[mine] = rows
        # consent is re-checked at every step: withdrawn enterprises count as missing values
        ids = [self.aligned_ids[i] for i in rows.tolist()]
        served = self.core.consent_mask(self.session, ids)
        self.Xb = np.tile(self.X_missing, (len(self.batch), 1))
        self.Xbi = np.tile(self.Xi_missing, (len(self.batch), 1))
        self.Xb[mine[served]], self.Xbi[mine[served]] = self.X[rows[served]], self.Xi[rows[served]]
        u = self.Xb @ self.opt.w
        center, radius = lc.interval(u)
        self.t = np.clip((u - center) / radius, -1.0, 1.0)
        return m.LrStats(step=msg.step, center=center, radius=radius, weight_change=change)

    def check_step(self, step: int, what: str) -> None:
        """``what`` arrived for the open step, before its gradient was produced."""
        if self.step_no < 0 or step != self.step_no or self.masks is not None:
            raise ProtocolError(f"{what} arrived for a step the holder did not open")

    def check_layout(self, K: int, widths: list[int], counts: list[int],
                     residual_bits: int) -> None:
        """The bank's degree and packed layout: sane, and with room for the masks.

        An honest slot-0 gradient ``sum_i x_ij d_i`` (|d_i| <= 1.5) has at most
        ``x_bits + bits(batch) + residual_bits + 1`` bits; the mask, ``slot - 2`` bits,
        must exceed it by ``MASK_BITS``, or the bank would read the gradient's high bits
        through it."""
        if not 1 <= K <= 32 or not widths or len(widths) != len(counts):
            raise InvalidInput("bad degree or group layout")
        pb = self.pk.plaintext_bits
        need = lc.MASK_BITS + self.x_bits + len(self.batch).bit_length() + residual_bits + 3
        if any(w < 1 or c < 1 or w * c > pb for w, c in zip(widths, counts)) or \
                widths[0] < need:
            raise InvalidInput(f"the slot layout leaves no room for the holder's masks (slot "
                               f"0 of {widths[0]} bits, at least {need} needed)")

    def masked(self, grads, slot_w: int, n_slots: int):
        """``grads`` plus a fresh uniform mask in every slot, re-randomised; keeps slot 0's
        masks to remove from the gradient the bank hands back."""
        masks, totals = [], []
        for _ in range(len(grads)):
            rs = [secrets.randbelow(1 << (slot_w - 2)) for _ in range(n_slots)]
            masks.append(rs[0])
            totals.append(sum(r << (slot_w * k) for k, r in enumerate(rs)))
        self.masks = masks
        return self.pk.rerandomize(self.pk.add_plain(grads, totals))

    def partials(self, first: m.LrTerms, rest) -> m.LrPartials:
        if self.chain is not None:
            raise ProtocolError("a holder in a chain of several takes ChainStep, not LrTerms")
        self.check_step(first.step, "coefficients")
        K, G = int(first.degree), int(first.groups)
        widths, counts = list(first.slot_bits), list(first.slots)
        if G != len(widths):
            raise InvalidInput("bad degree or group layout")
        self.check_layout(K, widths, counts, self.residual_bits)
        b = len(self.batch)
        per_row = (K + 1) * G
        chunks, offset, expected = [], 0, b * per_row
        width = self.pk.ciphertext_bytes
        for msg in itertools.chain([first], rest):  # read lazily, stop at the expected count
            if not isinstance(msg, m.LrTerms) or msg.step != first.step:
                raise ProtocolError("an LR coefficient stream mixes in other messages")
            if msg.offset != offset:
                raise ProtocolError(f"coefficient chunk at {msg.offset}, expected {offset}")
            if offset + len(msg.ciphertexts) // width > expected:
                raise ResourceLimit(f"more than the {expected} coefficient ciphertexts this "
                                    "step needs")
            with self.watch("holder_validate"):
                cv = self.pk.from_bytes_batch(msg.ciphertexts, what="LR coefficients")
            chunks.append(msg.ciphertexts)
            offset += len(cv)
        if offset != expected:
            raise ProtocolError(f"expected {b * per_row} coefficient ciphertexts, got {offset}")
        data = b"".join(chunks)
        E = lc.holder_exponents(self.t, K)  # b x K
        with self.watch("holder_partials"):
            sums, grads = polynomial_partials(self.pk, data, E, self.Xbi, K, G)
        out_grads = self.masked(grads, widths[0], counts[0])
        out_sums = self.pk.rerandomize(sums)
        return m.LrPartials(step=first.step, sums=self.pk.to_bytes_batch(out_sums),
                            gradients=self.pk.to_bytes_batch(out_grads))

    def finish(self, msg: m.LrFinish) -> m.LrModel:
        if self.model is None:
            self.apply_gradient(list(msg.masked_gradient))
            w = self.opt.averaged()
            s = self.session
            model_id = uuid.UUID(bytes=secrets.token_bytes(16)).hex
            spec = {"kind": KIND, **self.spec, "frac_bits": self.frac_bits,
                    "coef": [float(v) for v in w]}
            self.model = StoredModel(model_id, s.bank, s.purpose, list(self.names), spec,
                                     columns=model_columns(spec))
            self.core.models.save(self.model)
        # the holder's coefficients go to the bank only where it needs them for a scorecard's
        # points per holder bin; for plain LR they would let it decode rows from their scores
        coef = (list(self.model.mapper["coef"])
                if self.encoding == "woe" or REVEAL_STANDARD_COEFFICIENTS else [])
        return m.LrModel(model_id=self.model.model_id, feature_names=list(self.names),
                         coefficients=coef)


# -- feature encodings --------------------------------------------------------------------------
def woe_spec(core: HolderContext, session: Session, msg: m.LrStart) -> dict:
    binning = load_binning(core, session, msg.binning_id)
    n_feat = len(binning["mapper"]["features"])
    feats = [int(f) for f in msg.features]
    if not feats or len(set(feats)) != len(feats) or min(feats) < 0 or max(feats) >= n_feat:
        raise InvalidInput("features must name distinct holder features of the binning")
    sizes = [binning["n_final"][f] for f in feats]
    if len(msg.woe) % 8:
        raise InvalidInput(f"WOE values: {len(msg.woe)} bytes is not a whole number of float64")
    woe = np.frombuffer(msg.woe, dtype="<f8")
    if len(woe) != sum(sizes) or not np.all(np.isfinite(woe)):
        raise InvalidInput(f"expected {sum(sizes)} finite WOE values")
    return {"encoding": "woe", "binning_id": msg.binning_id, "binning": binning,
            "features": feats, "woe": woe.tolist()}


def encode(spec: dict, frame, frac_bits: int) -> np.ndarray:
    """The holder's model inputs for these rows (quantised to ``frac_bits``)."""
    if spec["encoding"] == "standard":
        return lc.quantize(FeaturePrep.from_dict(spec["prep"]).transform(frame), frac_bits)
    bins = final_bins(spec["binning"], frame)
    cols, at = [], 0
    for f in spec["features"]:
        size = spec["binning"]["n_final"][f]
        table = np.asarray(spec["woe"][at:at + size])
        at += size
        cols.append(table[bins[:, f]])
    return lc.quantize(np.stack(cols, axis=1), frac_bits)


def partial_scores(model: StoredModel, frame) -> np.ndarray:
    """``x_i . w_h`` per row, rounded to ``lc.SCORE_RESOLUTION`` (see there why)."""
    spec = model.mapper
    X = encode(spec, frame, int(spec.get("frac_bits", lc.FEATURE_BITS)))
    return lc.round_scores(X @ np.asarray(spec["coef"], dtype=np.float64))


# -- the steps ------------------------------------------------------------------------------------
def _state(s: Session) -> HolderLR:
    return s.state_as(HolderLR, "LrStart")


def start(core: HolderContext, caller: Caller, msg: m.LrStart, rest) -> Iterator:
    s = core.session(caller, msg.session_id, task="lr")
    with s.lock:
        st = HolderLR(core, s, msg)
        s.replace_state(st)
        core.audit(caller, s, "lr_start", len(st.train_rows),
                   f"encoding={st.encoding} features={len(st.names)}",
                   ids=[st.aligned_ids[i] for i in st.train_rows.tolist()])
        ready = m.LrReady(n_features=len(st.names), feature_names=list(st.names),
                          x_bits=st.x_bits)
    yield ready


def step(core: HolderContext, caller: Caller, msg: m.LrStep, rest) -> Iterator:
    s = core.session(caller, msg.session_id, task="lr")
    with s.lock:
        st = _state(s)
        stats = st.step(msg)
        core.audit(caller, s, "lr_step", st.own_rows, f"step={msg.step}")
    yield stats


def terms(core: HolderContext, caller: Caller, first: m.LrTerms, rest) -> Iterator:
    s = core.session(caller, first.session_id, task="lr")
    with s.lock:
        st = _state(s)
        out = st.partials(first, rest)
        core.audit(caller, s, "lr_partials", st.own_rows, f"step={first.step}")
    yield out


def finish(core: HolderContext, caller: Caller, msg: m.LrFinish, rest) -> Iterator:
    s = core.session(caller, msg.session_id, task="lr")
    with s.lock:
        out = _state(s).finish(msg)
        core.audit(caller, s, "lr_finish", 0, f"model={out.model_id}")
    yield out


def score(core: HolderContext, caller: Caller, msg: m.PartialScoreRequest, rest) -> Iterator:
    s = core.session(caller, msg.session_id)
    with s.lock:
        if s.task == "score":
            model = core.stored_model(s)
        elif s.task == "lr" and isinstance(s.state, HolderLR) and s.state.model is not None:
            model = s.state.model
        else:
            raise ProtocolError(f"a {s.task} session cannot return partial scores")
        if model.mapper.get("kind") != KIND:
            raise InvalidInput(f"model {model.model_id!r} is not a logistic regression")
        rows, served = core.scoring_rows(s, msg.ids, model)
        u = partial_scores(model, rows)
        core.audit(caller, s, "lr_score", int(served.sum()), f"ids={len(msg.ids)}",
                   ids=rows.index[served])
    yield m.PartialScores(scores=np.asarray(u, dtype="<f8").tobytes(),
                          covered=flags_to_bytes(served))


HANDLERS: dict[type, Callable[..., Iterator]] = {
    m.LrStart: start, m.LrStep: step, m.LrTerms: terms, m.LrFinish: finish,
    m.PartialScoreRequest: score,
}
