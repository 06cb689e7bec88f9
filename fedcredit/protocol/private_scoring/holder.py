"""The holder's step of private SecureBoost scoring (Fed-EINI style).

The bank sends, per enterprise and tree, every leaf's value encrypted under its own key,
with an encryption of 0 at the leaves its own splits rule out. The holder walks its own
splits (the bank's let an enterprise go both ways), multiplies the ciphertexts of the
leaves that remain — per tree exactly one of them carries a value — over all trees, and
returns one re-randomised ciphertext per enterprise. Consent, the per-request id cap and
the audit record are those of plain scoring (``predict``).

**Privacy** (what the bank learns): per enterprise one number, the model's raw score
(sum of the selected leaf values, at ``FRAC_BITS`` fixed-point precision) — not which leaf
was reached in any tree, and no holder decision off the path. The holder refuses a model
whose score would leave fewer than ``min_private_path_bits`` bits (default
:data:`~.math.MIN_PRIVATE_PATH_BITS`) of its decisions ambiguous for some enterprise (see
:mod:`.math`), and sums every tree of the model in every request, so that no two
requests, in one session or in two, can be differenced to isolate one tree. What the holder
learns: the ids scored and the tree list; the leaf ciphertexts are fresh encryptions under
the bank's key, so it learns nothing of the bank's splits or leaf values. Semi-honest bank:
a bank that sends non-zero values at leaves its splits rule out, or encodes leaf indices
in the values, learns the holder's leaf sets as with leaf masks; the holder cannot tell
without zero-knowledge proofs (accepted, docs/PRIVACY.md).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator

from ...crypto import PublicKey
from ...errors import (
    InvalidInput,
    PolicyViolation,
    ProtocolError,
    ResourceLimit,
)
from ..channel import Caller
from ..context import HolderContext
from ..session import Session
from ..wire import flags_to_bytes
from . import messages as m
from .math import check_complexity, sum_reachable

OPERATIONS = ("private_predict",)


class PrivateScoring:
    """A scoring session's private-scoring state: the bank's key and the pinned trees."""

    def __init__(self, key_bytes: bytes, pk: PublicKey, trees: list[int], bits: float):
        self.key_bytes = key_bytes
        self.pk = pk
        self.trees = trees
        self.bits = bits
        pk.start_zero_pool(capacity=256)  # re-randomisers computed between requests

    def close(self) -> None:
        self.pk.stop_zero_pool()


def _key(core: HolderContext, msg: m.PrivateScoreRequest) -> PublicKey:
    return core.policy.accept_key(msg.public_key, msg.scheme, where="request")


def _state(core: HolderContext, s: Session, msg: m.PrivateScoreRequest, trees: list[int],
           topologies: list) -> PrivateScoring:
    st = s.state if isinstance(s.state, PrivateScoring) else None
    if st is not None and st.trees != trees:
        raise ProtocolError("a private scoring session sums the same trees in every request "
                            f"(pinned: {len(st.trees)} trees); open a new session")
    min_bits = float(core.policy.min_private_path_bits)
    bits = check_complexity(topologies, min_bits)
    if st is None or st.key_bytes != bytes(msg.public_key):
        if s.state is not None and st is None:
            raise ProtocolError(f"a {s.task} session busy with another protocol cannot score")
        st = PrivateScoring(bytes(msg.public_key), _key(core, msg), trees, bits)
        s.replace_state(st)
    return st


def private_predict(core: HolderContext, caller: Caller, msg: m.PrivateScoreRequest,
                    rest) -> Iterator:
    s = core.session(caller, msg.session_id, task="score")
    with s.lock:
        model = core.stored_model(s, msg.trees)
        if "kind" in model.mapper:  # other protocols' models name their kind
            raise InvalidInput(f"model {model.model_id!r} is not a SecureBoost model")
        trees = [int(t) for t in msg.trees] or sorted(model.trees)
        if len(set(trees)) != len(trees):
            raise InvalidInput("a scoring request names a tree twice")
        unknown = [t for t in trees if t not in model.trees]
        if unknown:
            raise InvalidInput(f"the model has no tree {unknown[0]}")
        if sorted(trees) != sorted(model.trees):
            raise PolicyViolation(f"a private score sums every tree of the model "
                                  f"({len(model.trees)}), not {len(trees)}: two scores over "
                                  "tree sets that differ by one tree would give its leaf")
        topologies = [model.trees[t] for t in trees]
        widths = [sum(1 for nd in top if nd[3] == "leaf") for top in topologies]
        if [int(k) for k in msg.n_leaves] != widths:
            raise InvalidInput("the request's leaf counts differ from the model's trees")
        st = _state(core, s, msg, trees, topologies)
        pk = st.pk
        rows, served = core.scoring_rows(s, msg.ids, model)
        n, total = len(rows), sum(widths)
        if len(msg.leaf_values) > core.policy.max_session_bytes:
            raise ResourceLimit("the request's leaf ciphertexts exceed the holder's "
                                f"{core.policy.max_session_mib} MiB session limit")
        leaves = pk.from_bytes_batch(msg.leaf_values, count=n * total, what="leaf values")
        mapper = model.bin_mapper()
        bins = mapper.transform(rows)
        reach = model.leaf_paths(trees).reach(bins, mapper.n_bins)
        out = pk.rerandomize(sum_reachable(pk, leaves, reach))
        core.audit(caller, s, "private_predict", int(served.sum()),
                   f"ids={n} trees={len(trees)} path_bits={st.bits:.1f}",
                   ids=rows.index[served])
    yield m.PrivateScores(count=n, scores=pk.to_bytes_batch(out), covered=flags_to_bytes(served))


HANDLERS: dict[type, Callable[..., Iterator]] = {m.PrivateScoreRequest: private_predict}
