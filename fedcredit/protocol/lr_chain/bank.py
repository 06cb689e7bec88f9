"""The bank's steps of hetero LR with several holders, over one :class:`BankSession` each.

Per step, after each holder's ``LrStep`` (its interval of partial scores, as with one
holder): the bank encrypts its Chebyshev terms once, for the first holder; each holder in
turn contracts them by its own normalised partial score and seals the result to the next;
the last evaluates and returns the bank's sums and its masked gradient, and seals the
per-row residual ciphertexts to the others, who return their masked gradients. The bank
carries every sealed blob (it holds no key to them) and decrypts only aggregates.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ...errors import ProtocolError
from ..logistic import messages as lm
from ..logistic.bank import decode_step, encrypted_chunks, packed_terms, residual_coefficients
from ..session import BankSession
from . import math as cm
from . import messages as m


@dataclass
class ChainResult:
    intercept_grad: float  # sum over the batch of the residuals
    feature_grad: np.ndarray  # sum over the batch of x_ij * residual_i (bank features)
    masked: list[list[str]]  # per holder, its masked gradient slots to hand back
    degree: int


def chain_setup(sessions: Sequence[BankSession]) -> None:
    """Give every holder its place in the chain and the others' ephemeral public keys.

    **Privacy**: each holder learns how many holders the model has and its position (the
    holders' names it was told when its session opened); the bank learns the holders'
    X25519 public keys, which give it no key to their envelopes."""
    keys = []
    for s in sessions:
        r = s.call(m.SealKeyRequest(session_id=s.id), m.SealKeyReply)
        if len(r.public_key) != 32:
            raise ProtocolError(f"holder {s.holder_name!r} sent a seal key of "
                                f"{len(r.public_key)} bytes")
        keys.append(bytes(r.public_key))
    if len(set(keys)) != len(keys):
        raise ProtocolError("two holders sent the same seal key")
    blob = b"".join(keys)
    for p, s in enumerate(sessions):
        r = s.call(m.ChainSetup(session_id=s.id, position=p, public_keys=blob), m.ChainReady)
        if r.n_holders != len(sessions):
            raise ProtocolError(f"holder {s.holder_name!r} set up a chain of {r.n_holders}")


def _exchange(session: BankSession, requests: Iterable) -> list:
    return list(session.channel.exchange(requests))


def _relays(items: Sequence, source: int, target: int, who: str) -> list[m.ChainRelay]:
    for r in items:
        if not isinstance(r, m.ChainRelay) or r.source != source or r.target != target:
            raise ProtocolError(f"{who} answered a chain step with {type(r).__name__} "
                                f"(expected relays from {source} to {target})")
    return list(items)


def chain_terms(sessions: Sequence[BankSession], step: int, a: np.ndarray, y: np.ndarray,
                X_int: np.ndarray, stats: Sequence[lm.LrStats], holder_x_bits: Sequence[int],
                tol: float, max_degree: int, chunk: int = 1024,
                weights: np.ndarray | None = None) -> ChainResult:
    """One step's chain: the bank's terms through every holder; the decrypted sums.

    The bank expands ``sigmoid(a_i + C + R t) - y_i`` (``C``, ``R``: the holders' centers
    and radii summed; ``t`` the radius-weighted mean of their normalised partial scores) in
    Chebyshev polynomials of t, as with one holder, and sends the encrypted terms to the
    first holder only.

    **Privacy**: each holder receives ciphertexts under the bank's key only, and only
    sealed from another holder or from the bank; the bank sees the sealed blobs' lengths
    (rows x degree, public) and decrypts what one holder's step gives it: its own gradient,
    the residuals' sum, each holder's gradient plus that holder's mask."""
    n = len(sessions)
    pk, _ = sessions[0].key
    betas = cm.shares([s.radius for s in stats])
    gam, K = residual_coefficients(a, y, float(sum(s.center for s in stats)),
                                   float(sum(s.radius for s in stats)), tol, max_degree, weights)
    bound = max(cm.residual_bound(max((sum(abs(int(v)) for v in row) for row in gam),
                                      default=1), K, n),
                2 << cm.scale_bits(n))  # as wide as a residual of 1: the holders' masks
    widths, counts, plains = packed_terms(pk, gam, X_int, bound, max(holder_x_bits))

    def head(p: int, role: str) -> m.ChainStep:
        return m.ChainStep(session_id=sessions[p].id, step=step, role=role, degree=K,
                           groups=len(widths), slot_bits=widths, slots=counts,
                           beta=betas[p], scale_bits=cm.scale_bits(n))

    def first() -> Iterator:
        yield head(0, "contract")
        for offset, data in encrypted_chunks(sessions[0], plains, chunk):
            yield m.ChainCiphertexts(offset=offset, ciphertexts=data)

    with sessions[0].watch("bank_encrypt_and_wait"):
        got = _exchange(sessions[0], first())
    for p in range(1, n):
        relays = _relays(got, p - 1, p, f"holder {sessions[p - 1].holder_name!r}")
        with sessions[p].watch("bank_wait_chain"):
            got = _exchange(sessions[p], itertools.chain([head(p, "contract")], relays))
    last = sessions[-1].holder_name
    if not got or not isinstance(got[0], m.ChainPartials) or got[0].step != step:
        raise ProtocolError(f"the last holder {last!r} did not answer with its partials")
    partials, back = got[0], got[1:]
    for r in back:
        if not isinstance(r, m.ChainRelay) or r.source != n - 1 or not 0 <= r.target < n - 1:
            raise ProtocolError(f"the last holder {last!r} sent {type(r).__name__} among "
                                "its residuals")

    def gradient(q: int):
        s = sessions[q]
        mine = [r for r in back if r.target == q]
        with s.watch("bank_wait_chain"):
            r = s.stream(itertools.chain([head(q, "residuals")], mine), m.ChainGradient)
        if r.step != step:
            raise ProtocolError(f"holder {s.holder_name!r} answered another step's residuals")
        return pk.from_bytes_batch(r.gradients, what="LR gradients")

    with ThreadPoolExecutor(max(1, n - 1)) as pool:  # the holders work side by side
        grads = list(pool.map(gradient, range(n - 1)))
    grads.append(pk.from_bytes_batch(partials.gradients, what="LR gradients"))
    sums = pk.from_bytes_batch(partials.sums, count=len(widths), what="LR sums")
    ig, fg, masked = decode_step(sessions[0], sums, grads, widths, counts, cm.scale_bits(n))
    return ChainResult(intercept_grad=ig, feature_grad=fg, masked=masked, degree=K)
