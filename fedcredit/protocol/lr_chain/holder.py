"""A holder's part in hetero LR with several holders: its sealed-relay key, its place in
the chain, and per step its contraction of the sigmoid expansion (or, last, its evaluation).

Runs on the holder's ``lr`` session state (:class:`~fedcredit.protocol.logistic.holder.
HolderLR`: its weights, the open batch, its normalised partial scores ``t``). Everything
it receives is under the bank's key, sealed by the previous holder or sent by the bank; it
learns no other holder's value and no residual.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from ...crypto import polynomial_contract, polynomial_partials
from ...crypto.seal import PUBLIC_BYTES, Envelope, SealKey
from ...errors import InvalidInput, ProtocolError, ResourceLimit
from ..channel import Caller
from ..context import HolderContext
from ..logistic.holder import HolderLR
from . import math as cm
from . import messages as m

OPERATIONS = ("lr_chain_setup", "lr_chain")

#: ciphertexts per relayed chunk (about 0.5 MB with a 2048-bit Paillier key)
RELAY_CHUNK = 1024
#: seal what one holder sends another (False: the bank reads each row's residual and so the
#: holders' summed partial score; only for the attack test that shows it, tests/attacks/)
SEAL_RELAYS = True
#: re-randomise the residual ciphertexts the last holder passes the others (False: a holder
#: that knows its own contracted output recognises, by trial, the last holder's t per row;
#: only for the attack test that shows it)
RERANDOMIZE_RESIDUALS = True


@dataclass
class ChainState:
    """This holder's place in the chain of one LR session."""

    seal: SealKey = field(default_factory=SealKey)
    position: int = -1  # -1: keys exchanged, order not yet set
    n: int = 0
    envelopes: dict[int, Envelope] = field(default_factory=dict)
    layout: tuple | None = None  # the open step's (degree, widths, counts)
    contracted: int = -1  # the last step this holder contracted

    @property
    def last(self) -> bool:
        return self.position == self.n - 1


def aad(kind: str, step: int, source: int, target: int, offset: int, count: int,
        layout: tuple) -> bytes:
    """What a sealed blob is bound to: a blob moved to another step, offset or holder, or
    read under another degree or slot layout than it was made for, fails."""
    return (f"fedcredit-lr-chain|{kind}|{step}|{source}|{target}|{offset}|{count}|"
            f"{layout!r}").encode()


def seal_chunks(env: Envelope, kind: str, step: int, source: int, target: int,
                data: bytes, width: int, layout: tuple) -> list[m.ChainRelay]:
    count = len(data) // width
    out = []
    for lo in range(0, count, RELAY_CHUNK):
        k = min(RELAY_CHUNK, count - lo)
        part = data[lo * width:(lo + k) * width]
        blob = env.seal(part, aad(kind, step, source, target, lo, k, layout)) \
            if SEAL_RELAYS else part
        out.append(m.ChainRelay(source=source, target=target, offset=lo, count=k, sealed=blob))
    return out


def _state(core: HolderContext, caller: Caller, session_id: str):
    s = core.session(caller, session_id, task="lr")
    return s, s.state_as(HolderLR, "LrStart")


def _chain(st: HolderLR) -> ChainState:
    ch = st.chain
    if not isinstance(ch, ChainState) or ch.position < 0:
        raise ProtocolError("this LR session has not been set up as a chain of holders")
    return ch


# -- set-up -------------------------------------------------------------------------------------
def seal_key(core: HolderContext, caller: Caller, msg: m.SealKeyRequest, rest) -> Iterator:
    s, st = _state(core, caller, msg.session_id)
    with s.lock:
        if st.chain is not None or st.step_no >= 0:
            raise ProtocolError("a chain key is made once, before the first LR step")
        st.chain = ChainState()
        reply = m.SealKeyReply(public_key=st.chain.seal.public)
    yield reply


def setup(core: HolderContext, caller: Caller, msg: m.ChainSetup, rest) -> Iterator:
    s, st = _state(core, caller, msg.session_id)
    with s.lock:
        ch = st.chain
        if not isinstance(ch, ChainState) or ch.position >= 0 or st.step_no >= 0:
            raise ProtocolError("ChainSetup comes once, after SealKeyRequest and before the "
                                "first LR step")
        keys = bytes(msg.public_keys)
        n, p = len(keys) // PUBLIC_BYTES, int(msg.position)
        if len(keys) % PUBLIC_BYTES or not 2 <= n <= cm.MAX_HOLDERS:
            raise InvalidInput(f"public_keys must be 32 bytes for each of 2 to "
                               f"{cm.MAX_HOLDERS} holders, got {len(keys)} bytes")
        parts = [keys[i * PUBLIC_BYTES:(i + 1) * PUBLIC_BYTES] for i in range(n)]
        if not 0 <= p < n or parts[p] != ch.seal.public:
            raise InvalidInput("position does not name this holder's own key in the chain")
        if len(set(parts)) != n:
            raise InvalidInput("two holders of the chain have the same key")
        ch.envelopes = {q: ch.seal.pair(parts[q], f"public key of chain holder {q}")
                        for q in range(n) if q != p}
        ch.position, ch.n = p, n
        core.audit(caller, s, "lr_chain_setup", 0, f"position={p} holders={n}")
        ready = m.ChainReady(n_holders=n)
    yield ready


# -- a step -------------------------------------------------------------------------------------
def _check_head(st: HolderLR, ch: ChainState, head: m.ChainStep) -> tuple[int, list, list]:
    K = int(head.degree)
    widths, counts = [int(w) for w in head.slot_bits], [int(c) for c in head.slots]
    if int(head.groups) != len(widths):
        raise InvalidInput("bad degree or group layout")
    if int(head.scale_bits) != cm.scale_bits(ch.n):
        raise InvalidInput(f"scale_bits {head.scale_bits} is not the {cm.scale_bits(ch.n)} of "
                           f"a chain of {ch.n} holders")
    st.check_layout(K, widths, counts, cm.scale_bits(ch.n))
    return K, widths, counts


def _read(st: HolderLR, chunks, expected: int, opener) -> bytes:
    """The ciphertexts of a stream's chunks, in order, checked; ``opener(msg, offset)``
    returns a chunk's serialized ciphertexts."""
    width, got, offset = st.pk.ciphertext_bytes, [], 0
    for msg in chunks:
        data = opener(msg, offset)
        k = len(data) // width
        if offset + k > expected:
            raise ResourceLimit(f"more than the {expected} ciphertexts this step needs")
        with st.watch("holder_validate"):
            st.pk.from_bytes_batch(data, what="chained ciphertexts")
        got.append(data)
        offset += k
    if offset != expected:
        raise ProtocolError(f"expected {expected} ciphertexts, got {offset}")
    return b"".join(got)


def _sealed_opener(ch: ChainState, kind: str, step: int, source: int, layout: tuple):
    def opener(msg, offset: int) -> bytes:
        if not isinstance(msg, m.ChainRelay) or msg.source != source or \
                msg.target != ch.position or msg.offset != offset:
            raise ProtocolError(f"expected a relay from chain holder {source} at {offset}")
        if not SEAL_RELAYS:
            return bytes(msg.sealed)
        return ch.envelopes[source].open(msg.sealed, aad(kind, step, source, ch.position,
                                                         offset, int(msg.count), layout))
    return opener


def contract(core: HolderContext, caller: Caller, head: m.ChainStep, rest) -> Iterator:
    """role "contract": the first holder takes the bank's ciphertexts, the others the
    previous holder's sealed output; each contracts by its own ``t``; the last evaluates,
    returns the bank's sums and its masked gradient, and seals its residuals to the others."""
    s, st = _state(core, caller, head.session_id)
    with s.lock:
        ch = _chain(st)
        if head.role == "residuals":
            out = _residuals(st, ch, head, rest)
            core.audit(caller, s, "lr_chain", st.own_rows, f"step={head.step} gradient")
        elif head.role == "contract":
            out = _contract(st, ch, head, rest)
            core.audit(caller, s, "lr_chain", st.own_rows,
                       f"step={head.step} position={ch.position}")
        else:
            raise InvalidInput(f"unknown chain role {head.role!r}")
    yield from out


def _contract(st: HolderLR, ch: ChainState, head: m.ChainStep, rest) -> list:
    st.check_step(head.step, "a chain step")
    if ch.contracted == head.step:
        raise ProtocolError(f"step {head.step} was already contracted")
    K, widths, counts = _check_head(st, ch, head)
    beta = float(head.beta)
    if ch.last != (beta == 1.0) or not 0.0 < beta <= 1.0:
        raise InvalidInput(f"beta {beta!r} for chain position {ch.position} of {ch.n}")
    G, b, width = len(widths), len(st.batch), st.pk.ciphertext_bytes
    step, layout = int(head.step), (K, tuple(widths), tuple(counts))
    if ch.position == 0:
        def plain(msg, offset: int) -> bytes:
            if not isinstance(msg, m.ChainCiphertexts) or msg.offset != offset:
                raise ProtocolError(f"expected the bank's ciphertexts at {offset}")
            return bytes(msg.ciphertexts)
        data = _read(st, rest, b * G * (K + 1), plain)
    else:
        data = _read(st, rest, b * G * (K + 1),
                     _sealed_opener(ch, "terms", step, ch.position - 1, layout))
    with st.watch("holder_partials"):
        out = polynomial_contract(st.pk, data, cm.exponents(st.t, beta, K), G)
    ch.contracted, ch.layout = step, (K, widths, counts)
    st.residual_bits = int(head.scale_bits)
    if not ch.last:
        return seal_chunks(ch.envelopes[ch.position + 1], "terms", step, ch.position,
                           ch.position + 1, out, width, layout)
    # the last holder: out holds Enc(d_i * packed (1, x_b,i)) per row and group
    with st.watch("holder_partials"):
        sums, grads = polynomial_partials(st.pk, out, np.zeros((b, 0), np.int64), st.Xbi, 0, G)
    answer: list = [m.ChainPartials(
        step=step, sums=st.pk.to_bytes_batch(st.pk.rerandomize(sums)),
        gradients=st.pk.to_bytes_batch(st.masked(grads, widths[0], counts[0])))]
    d0 = b"".join(out[(i * G) * width:(i * G + 1) * width] for i in range(b))
    if RERANDOMIZE_RESIDUALS:  # the others have no key: the cheap obfuscator is enough
        d0 = st.pk.to_bytes_batch(st.pk.rerandomize(st.pk.from_bytes_batch(d0), full=False))
    for q in range(ch.n - 1):
        answer += seal_chunks(ch.envelopes[q], "residuals", step, ch.position, q, d0, width,
                              layout)
    return answer


def _residuals(st: HolderLR, ch: ChainState, head: m.ChainStep, rest) -> list:
    st.check_step(head.step, "residuals")
    if ch.last or ch.contracted != head.step:
        raise ProtocolError("residuals come to the other holders after they contracted "
                            "the step")
    K, widths, counts = _check_head(st, ch, head)
    if (K, widths, counts) != ch.layout:
        raise InvalidInput("the residuals' layout is not the step's")
    b, step = len(st.batch), int(head.step)
    d0 = _read(st, rest, b, _sealed_opener(ch, "residuals", step, ch.n - 1,
                                           (K, tuple(widths), tuple(counts))))
    with st.watch("holder_partials"):
        _, grads = polynomial_partials(st.pk, d0, np.zeros((b, 0), np.int64), st.Xbi, 0, 1)
    return [m.ChainGradient(step=step, gradients=st.pk.to_bytes_batch(
        st.masked(grads, widths[0], counts[0])))]


HANDLERS: dict[type, Callable[..., Iterator]] = {
    m.SealKeyRequest: seal_key, m.ChainSetup: setup, m.ChainStep: contract,
}
