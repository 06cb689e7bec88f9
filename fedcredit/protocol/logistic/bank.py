"""The bank's steps of hetero logistic regression, over a :class:`BankSession`.

Each function sends exactly the messages of one step and returns decoded results; the
estimator :class:`fedcredit.models.HeteroLogisticRegression` is written against these
functions only, and its docstring describes the protocol and what each message reveals.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ...crypto import CipherVector, SlotLayout
from ...errors import ProtocolError
from ..session import BankSession
from ..wire import flags_from_bytes, join_flags, rows_to_bytes
from . import math as lc
from . import messages as m


@dataclass
class StepResult:
    intercept_grad: float  # sum over the batch of the residuals
    feature_grad: np.ndarray  # sum over the batch of x_ij * residual_i (bank features)
    masked: list[str]  # the holder's masked gradient slots, to hand back
    degree: int


def lr_start(session: BankSession, rows: np.ndarray, *, encoding: str = "standard",
             binning_id: str = "", features: Sequence[int] = (), woe: np.ndarray | None = None,
             learning_rate: float, decay: float, l2: float,
             frac_bits: int = lc.FEATURE_BITS) -> m.LrReady:
    """**Privacy**: the holder learns the training rows (of the aligned ids it knows) and the
    optimiser's settings; for ``encoding="woe"`` also the WOE of its own bins. It refuses a
    ``learning_rate`` above its policy's ``max_learning_rate`` (default 1.0): a large step
    would amplify whatever a crafted gradient steers its weights towards."""
    return session.call(m.LrStart(
        session_id=session.id, rows=rows_to_bytes(rows), encoding=encoding,
        binning_id=binning_id, features=list(features),
        woe=b"" if woe is None else np.asarray(woe, dtype="<f8").tobytes(),
        learning_rate=float(learning_rate), decay=float(decay), l2=float(l2),
        frac_bits=int(frac_bits)), m.LrReady)


def lr_step(session: BankSession, step: int, rows: np.ndarray, masked: list[str],
            new_epoch: bool, unserved: np.ndarray | None = None) -> m.LrStats:
    """Open a mini-batch; returns the holder's (center, radius) of its partial scores.

    **Privacy**: the holder learns the batch's rows and, from ``masked``, its own gradient
    ``sum_i x_ij d_i`` summed over the previous batch. Were every residual ``d_i`` one
    constant minus the label (bank weights at zero), that sum would give the holder the
    default count and each of its columns' exact sum over the batch's defaulters; the
    estimator's ``warm_start="bank"`` (default) starts the bank's weights at its own local
    fit, so each ``d_i`` depends on bank features the holder never sees (docs/PRIVACY.md,
    leak 2). The holder refuses a gradient outside ``(1 + GRADIENT_SLACK) sum_i |x_ij|``,
    which no residuals in [-1, 1] produce (partial hardening against a bank steering its
    weights with offsets: an offset within the range is not detected). The bank learns the
    interval of the holder's partial scores over the batch, rounded to 1/8 (an aggregate).
    With ``unserved`` (several holders, ``align="any"``: the batch positions of enterprises
    this holder does not serve), the holder learns how many of the batch's enterprises it
    does not serve, not which: the bank shuffles such batches.
    """
    gaps = b"" if unserved is None else rows_to_bytes(unserved)
    with session.watch("bank_wait_stats"):
        r = session.call(m.LrStep(session_id=session.id, step=step, rows=rows_to_bytes(rows),
                                  masked_gradient=masked, new_epoch=new_epoch,
                                  unserved=gaps), m.LrStats)
    if r.step != step:
        raise ProtocolError("unexpected answer to an LR step")
    return r


def lr_terms(session: BankSession, step: int, a: np.ndarray, y: np.ndarray,
             X_int: np.ndarray, stats: m.LrStats, holder_x_bits: int, tol: float,
             max_degree: int, chunk: int = 1024,
             weights: np.ndarray | None = None) -> StepResult:
    """Send Enc(coefficient x packed bank features) per row; decrypt the batch sums.

    For row i the bank expands ``sigmoid(a_i + center + radius * t) - y_i`` in Chebyshev
    polynomials of t (the holder's normalised partial score) and encrypts each coefficient
    times the row's packed vector ``(1, x_i1, ..., x_id)``. The holder raises them to its
    ``T_k(t_i)`` and multiplies: Enc(residual_i * (1, x_i)), which it sums over the batch
    (the bank's gradient) and multiplies by its own features (its gradient, masked).

    **Privacy**: the holder receives ciphertexts only; the bank learns its own gradient and
    the residuals' sum over the batch, and the holder's gradient plus the holder's mask.
    """
    pk, sk = session.key
    gam, K = residual_coefficients(a, y, stats.center, stats.radius, tol, max_degree, weights)
    # the holder raises to T_k + 1 >= 0: the constant term takes the +1's back out
    g0 = (gam[:, 0] - gam[:, 1:].sum(axis=1)) * (1 << lc.CHEB_BITS)
    gam = np.column_stack([g0, gam[:, 1:]])
    bound = int(max(abs(int(v)) for v in g0)) + int(
        max(sum(abs(int(v)) for v in row[1:]) for row in gam)) * (2 << lc.CHEB_BITS)
    # never narrower than a residual of 1 needs: the holder sizes its masks on that
    bound = max(bound, 2 << (lc.COEF_BITS + lc.CHEB_BITS))
    widths, counts, plains = packed_terms(pk, gam, X_int, bound, holder_x_bits)

    def requests() -> Iterator:
        for offset, data in encrypted_chunks(session, plains, chunk):
            yield m.LrTerms(session_id=session.id, step=step, degree=K, groups=len(widths),
                            slot_bits=widths, slots=counts, offset=offset, ciphertexts=data,
                            last=False)

    with session.watch("bank_encrypt_and_wait"):
        r = session.stream(requests(), m.LrPartials)
    if r.step != step:
        raise ProtocolError("unexpected answer to LR coefficients")
    sums = pk.from_bytes_batch(r.sums, count=len(widths), what="LR sums")
    grads = pk.from_bytes_batch(r.gradients, what="LR gradients")
    ig, fg, (masked,) = decode_step(session, sums, [grads], widths, counts,
                                    lc.COEF_BITS + lc.CHEB_BITS)
    return StepResult(intercept_grad=ig, feature_grad=fg, masked=masked, degree=K)


def residual_coefficients(a: np.ndarray, y: np.ndarray, center: float, radius: float,
                          tol: float, max_degree: int, weights: np.ndarray | None = None
                          ) -> tuple[np.ndarray, int]:
    """Per row, the fixed-point (``COEF_BITS``) Chebyshev coefficients ``gamma_ik`` of
    ``w_i (sigmoid(a_i + center + radius t) - y_i)`` in t (object ints, b x (K + 1)), and
    the degree K, the smallest that meets ``tol`` on every row."""
    c = lc.chebyshev_coefficients(a, center, radius)
    K = lc.choose_degree(c, tol, max_degree)
    if weights is not None:  # w_i (sigmoid - y_i): each row's terms scaled by w_i in [0, 1]
        rw = np.asarray(weights, dtype=np.float64)
        c, y = c * rw[:, None], y * rw
    gam = np.rint(c[:, :K + 1] * 2.0 ** lc.COEF_BITS).astype(object)
    gam[:, 0] = np.rint((c[:, 0] - y) * 2.0 ** lc.COEF_BITS).astype(object)
    return gam, K


def packed_terms(pk, gam: np.ndarray, X_int: np.ndarray, bound: int, holder_x_bits: int
                 ) -> tuple[list[int], list[int], list[int]]:
    """The slot layout for residuals up to ``bound`` and the plaintexts to encrypt: per row,
    per group, each coefficient times the row's packed ``(1, x_i1, ..., x_id)``."""
    b, d = X_int.shape
    x_bits = int(np.abs(X_int).max()).bit_length() if X_int.size else 1
    widths, counts = lc.slot_layout(pk.plaintext_bits, b, bound, max(1, x_bits),
                                    holder_x_bits, d)
    cols = [np.ones(b, dtype=np.int64)] + [X_int[:, j] for j in range(d)]
    packs, at = [], 0
    for w, k in zip(widths, counts):
        packs.append(SlotLayout.repeat(w, k).pack(cols[at:at + k]))
        at += k
    plains: list[int] = []
    for i in range(b):
        coefs = [int(v) for v in gam[i]]
        for V in packs:
            plains.extend(ci * V[i] for ci in coefs)
    return widths, counts, plains


def encrypted_chunks(session: BankSession, plains: list[int], chunk: int) -> Iterator:
    """(offset, serialized ciphertexts) of ``plains``, encrypted chunk by chunk (lazily,
    so that the holder works on the first chunks while later ones are encrypted)."""
    pk, sk = session.key
    offset = 0
    with session.watch("bank_encrypt"):
        it = sk.encrypt_bytes_iter(plains, chunk=chunk, workers=session.workers)
    for data in it:
        yield offset, data
        offset += len(data) // pk.ciphertext_bytes


def decode_step(session: BankSession, sums: CipherVector, holder_grads: list[CipherVector],
                widths: list[int], counts: list[int], residual_bits: int
                ) -> tuple[float, np.ndarray, list[list[str]]]:
    """Decrypt a step's sums and each holder's masked gradients: (intercept gradient, bank
    feature gradient, per holder its masked slot-0 values to hand back)."""
    _, sk = session.key
    with session.watch("bank_decrypt"):
        plain = sk.decrypt(CipherVector.concat([sums, *(g for g in holder_grads if len(g))]),
                           workers=session.workers)
    slot_vals = []
    for g, (w, k) in enumerate(zip(widths, counts)):
        slot_vals.extend(SlotLayout.repeat(w, k).unpack([plain[g]]))
    vals = [col[0] for col in slot_vals]
    layout0 = SlotLayout.repeat(widths[0], counts[0])
    masked, at = [], len(widths)
    for grads in holder_grads:
        masked.append([str(layout0.unpack([v])[0][0]) for v in plain[at:at + len(grads)]])
        at += len(grads)
    scale = 2.0 ** residual_bits
    return (float(vals[0]) / scale,
            np.array(vals[1:], dtype=np.float64) / scale / 2.0 ** lc.FEATURE_BITS, masked)


def lr_finish(session: BankSession, masked: list[str]) -> m.LrModel:
    """**Privacy**: for ``encoding="woe"`` (a scorecard's points per holder bin need them)
    the bank learns the holder's final (epoch-averaged) coefficients; for plain LR
    (``"standard"``) it learns the model id and feature names only: the holder keeps its
    coefficients, which with the partial scores would let the bank decode one-hot levels
    and quantised values per enterprise (docs/PRIVACY.md, leak 5)."""
    return session.call(m.LrFinish(session_id=session.id, masked_gradient=masked), m.LrModel)


def partial_scores(session: BankSession, ids: Sequence[str], batch: int = 100_000) -> np.ndarray:
    """The holder's part of the final model's score for each id.

    **Privacy**: the holder learns the ids scored; the bank learns, per id, the holder's
    partial score of the final model rounded to ``SCORE_RESOLUTION`` (2^-10 log-odds):
    exact float64 scores form a lattice in the holder's quantised features from which,
    with the coefficients, a row's one-hot level is solved for; rounded, they carry what
    the final score needs (a probability moves by at most 2^-13) and no such lattice.
    """
    return partial_scores_covered(session, ids, batch)[0]


def partial_scores_covered(session: BankSession, ids: Sequence[str], batch: int = 100_000
                           ) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`partial_scores` and, per id, whether the holder had its data and a current
    consent (None from a holder too old to say)."""
    ids = [str(i) for i in ids]
    out, covered = [], []
    for lo in range(0, len(ids), batch):
        part = ids[lo:lo + batch]
        r = session.call(m.PartialScoreRequest(session_id=session.id, ids=part),
                         m.PartialScores)
        u = np.frombuffer(r.scores, dtype="<f8")
        if len(u) != len(part):
            raise ProtocolError("the holder scored a different number of ids")
        out.append(u)
        covered.append(flags_from_bytes(r.covered, len(part), "holder coverage"))
    return (np.concatenate(out) if out else np.zeros(0)), join_flags(covered, len(ids))
