"""Several data holders in one model (the platforms' "1+N"): which channels a call names,
the sessions of one fit, and which holder of a fitted model answers which part.

A bank passes ``holder=`` (one channel) or ``holders=`` (a list of channels, or a mapping
of holder name to channel). Each holder is an unchanged holder service with its own
consents, audit log and policy; it sees only its own session. The bank aligns with each
by PSI and trains on the enterprises every holder serves.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import InvalidInput, SessionNotFound
from ..protocol.session import BankSession
from .scoring import as_channel


def named_channels(holder=None, holders=None) -> list[tuple[str | None, object]]:
    """``[(name or None, channel), ...]`` of a call's ``holder=`` / ``holders=``: exactly one
    of them; a mapping gives each channel the name the model knows its holder by."""
    if (holder is None) == (holders is None):
        raise InvalidInput("pass holder= (one holder) or holders= (a list of holders, or a "
                           "mapping of holder name to holder), not both and not neither")
    if holders is None:
        return [(None, holder)]
    items: list[tuple[str | None, object]]
    if isinstance(holders, Mapping):
        items = [(str(k), v) for k, v in holders.items()]
    elif isinstance(holders, Sequence) and not isinstance(holders, (str, bytes)):
        items = [(None, v) for v in holders]
    else:
        raise InvalidInput("holders= must be a list of holders or a mapping of holder name "
                           f"to holder, got {type(holders).__name__}")
    if not items:
        raise InvalidInput("holders= names no holder")
    for k, (_, ch) in enumerate(items):
        try:
            as_channel(ch)
        except InvalidInput:
            raise InvalidInput(f"holders[{k}] is not a channel or a PassiveParty") from None
    return items


@dataclass
class HolderPart:
    """What the bank's model records of one holder: its name, the id under which it keeps
    its half of the model, and the features it published."""

    name: str
    model_id: str
    features: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"name": self.name, "model_id": self.model_id, "features": list(self.features)}

    @classmethod
    def from_dict(cls, d: dict) -> HolderPart:
        return cls(str(d["name"]), str(d["model_id"]), [str(f) for f in d["features"]])


@dataclass
class HolderSessions:
    """The open training sessions of one fit, one per holder, aligned on the same rows.

    ``local[k]`` maps a training row (a position in the bank's aligned order) to holder
    ``k``'s position for it (-1: holder ``k`` does not serve it, ``align="any"``), or is None
    where the two orders are the same (every holder aligned exactly the training rows)."""

    sessions: list[BankSession]
    local: list[np.ndarray | None]
    watch: _Watches = field(init=False)

    def __post_init__(self) -> None:
        self.watch = _Watches(self.sessions)

    @property
    def names(self) -> list[str]:
        return [s.holder_name for s in self.sessions]

    @property
    def holder_name(self) -> str:
        return "+".join(self.names)

    def __len__(self) -> int:
        return len(self.sessions)

    @property
    def partial(self) -> bool:
        """Some holder does not serve every training row (``align="any"``)."""
        return any(m is not None and bool((m < 0).any()) for m in self.local)

    def holder_rows(self, k: int, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Holder ``k``'s positions of the training ``rows`` it serves, and the positions
        within ``rows`` of those it does not (None: it serves them all)."""
        m = self.local[k]
        if m is None:
            return rows, None
        pos = m[rows]
        gaps = np.flatnonzero(pos < 0)
        return pos[pos >= 0], (gaps if len(gaps) else None)


def holder_names(channels: list) -> list[str]:
    """Each holder's name, as it answers a ping (told to every other holder when sessions
    open, so each audits beside whom its data was used); two holders of one name are
    refused."""
    from ..protocol import messages as pm

    names = []
    for k, ch in enumerate(channels):
        pong = ch.call(pm.Ping())
        if not isinstance(pong, pm.Pong):
            raise InvalidInput(f"holders[{k}] did not answer a ping")
        names.append(str(pong.holder_name))
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise InvalidInput(f"two holders call themselves {dup!r}: a model names each "
                           "holder's features by its holder's name")
    return names


class _Watches:
    """The sessions' time budgets summed by phase (the holders work side by side, so a sum
    over them is work, not wall time)."""

    def __init__(self, sessions: list[BankSession]):
        self.sessions = sessions

    def as_dict(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for s in self.sessions:
            for k, v in s.watch.as_dict().items():
                out[k] = round(out.get(k, 0.0) + v, 4)
        return out


def fit_with_holders(est, X, y, w, named: list[tuple[str | None, object]], keys, fit_kw,
                     any_holder: bool = False):
    """:meth:`FederatedEstimator.fit` with several holders: one key, one session per holder,
    PSI with each, training on the enterprises every holder serves (``any_holder``: at
    least one)."""
    import time

    from ..crypto import generate_keypair
    from ..protocol.alignment.bank import align_many

    if not getattr(est, "_multi_holder", False):
        raise InvalidInput(f"{type(est).__name__} trains with one holder; pass holder=")
    keys = est if keys is None else keys
    channels = [as_channel(h) for _, h in named]
    names = holder_names(channels)
    for (given, _), name in zip(named, names):
        if given is not None and given != name:
            raise InvalidInput(f"holders[{given!r}] is the holder {name!r}")
    _, sk = generate_keypair(keys.he_scheme, bits=keys.key_bits, insecure=keys.insecure_key)
    sk.warm_up(keys.n_jobs)
    t0 = time.perf_counter()
    sessions: list[BankSession] = []
    try:  # one key: each gradient is encrypted once
        open_sessions(channels, names, est._task, sk, keys.n_jobs, sessions)
        al, local = align_many(sessions, X.index.tolist(), any_holder)
        group = HolderSessions(sessions, local)
        served = f"served by {'any' if any_holder else 'all'} of the {len(named)} holders"
        Xa, ya, wa = est._aligned_rows(al, X, y, w, served)
        est.alignment_seconds_ = time.perf_counter() - t0
        est._train(group, Xa, ya, wa, np.arange(len(Xa)), **fit_kw)
    finally:
        for s in sessions:
            s.close()
    return est


def open_sessions(channels: list, names: list[str], task: str, key, workers,
                  into: list[BankSession]) -> list[BankSession]:
    """A ``task`` session under ``key`` with each holder, each told the others' names;
    appended to ``into`` as they open, so the caller closes those that did."""
    from .scoring import open_session

    for k, channel in enumerate(channels):
        def opener(ch=channel, k=k) -> BankSession:
            return BankSession(ch, task, key, workers=workers, parties=names[:k] + names[k + 1:])
        into.append(open_session(opener))
    return into


def in_holder_order(channels: list, names: list[str]) -> list:
    """``channels`` reordered to the holders named ``names`` (asked by ping): a model
    fitted on an earlier model of several holders trains them in that model's order."""
    got = holder_names(channels)
    if sorted(got) != sorted(names):
        raise InvalidInput(f"the holders given are {got}; the model was fitted with {names}")
    return [channels[got.index(n)] for n in names]


def plan_batches(group: HolderSessions, rows: np.ndarray, floors: list[int], bs: int,
                 epochs: int, rng: np.random.Generator) -> tuple[list[list[np.ndarray]], int]:
    """Every epoch's mini-batches (positions in ``rows``) for hetero LR, drawn before the
    first step, and the batch size.

    With holders that serve only some rows (``align="any"``) the batch grows until each
    holder expects twice its floor of its own rows, batches stay shuffled (where a holder's
    gaps fall then says nothing of the ids it lacks), and a batch that still holds fewer
    than a holder's floor is refused here, not by the holder halfway through the fit."""
    n = len(rows)
    if group.partial:
        for k, f in enumerate(floors):
            share = len(group.holder_rows(k, rows)[0]) / max(n, 1)
            bs = min(n, max(bs, int(np.ceil(2 * f / max(share, 1e-12)))))
    keep = (lambda b: b) if group.partial else np.sort
    plan = []
    for _ in range(epochs):
        order = rng.permutation(n)
        batches = [keep(order[lo:lo + bs]) for lo in range(0, n, bs)]
        if len(batches) > 1 and len(batches[-1]) < bs:  # fold a short tail in
            tail = batches.pop()
            batches[-1] = keep(np.concatenate([batches[-1], tail]))
        plan.append(batches)
    if group.partial:
        for batch in (b for epoch in plan for b in epoch):
            for k, f in enumerate(floors):
                own = len(group.holder_rows(k, rows[batch])[0])
                if own < f:
                    raise InvalidInput(
                        f"a batch of {len(batch)} rows holds {own} that holder "
                        f"{group.sessions[k].holder_name!r} serves, below its floor of {f}: "
                        "pass a larger batch_size, or align='all'")
    return plan, bs


def holder_kwargs(channels: list) -> dict:
    """``holder=`` for one channel, ``holders=`` for several (in training order)."""
    return {"holder": channels[0]} if len(channels) == 1 else {"holders": list(channels)}


def require_one_holder(model, what: str) -> None:
    """Refuse ``what`` (a service written for one holder) for a model of several."""
    parts = model.__dict__.get("holders_") or []
    if len(parts) > 1:
        raise InvalidInput(f"{what} works with a model of one holder; this one has "
                           f"{len(parts)} ({', '.join(p.name for p in parts)})")


# -- the holders of a fitted model ---------------------------------------------------------------
def holder_parts(est) -> list[HolderPart]:
    """The model's holders, in training order (a one-holder model from its own fields)."""
    parts = est.__dict__.get("holders_")
    if parts:
        return list(parts)
    return [HolderPart(est.holder_name_, est.model_id_, list(est.holder_feature_names_))]


def holder_feature_names(est) -> list[str]:
    """The holders' features as the model names them: ``holder:<feature>`` with one holder,
    ``<holder name>:<feature>`` with several."""
    parts = holder_parts(est)
    if len(parts) == 1:
        return [f"holder:{f}" for f in parts[0].features]
    return [f"{p.name}:{f}" for p in parts for f in p.features]


def scoring_channels(est, holder) -> list[tuple[HolderPart, object]]:
    """(part, channel) per holder of the model from a scoring call's ``holder=`` (one
    channel) or ``holders=`` (``(name or None, channel)`` pairs: a list in training order,
    or a mapping by name)."""
    parts = holder_parts(est)
    if not isinstance(holder, list):
        if len(parts) > 1:
            raise InvalidInput(f"this model was trained with {len(parts)} holders "
                               f"({', '.join(p.name for p in parts)}): pass holders=")
        return [(parts[0], holder)]
    if all(name is not None for name, _ in holder):
        by_name = dict(holder)
        missing = [p.name for p in parts if p.name not in by_name]
        if missing:
            raise InvalidInput(f"holders= lacks {missing[0]!r}, a holder of this model")
        return [(p, by_name[p.name]) for p in parts]
    if len(holder) != len(parts):
        raise InvalidInput(f"holders= names {len(holder)} holders; this model was trained "
                           f"with {len(parts)} ({', '.join(p.name for p in parts)})")
    return [(p, ch) for p, (_, ch) in zip(parts, holder)]


def _wrong_holder(found: str, expected: str) -> InvalidInput:
    return InvalidInput(f"the holder at this channel is {found!r}; the model expects "
                        f"{expected!r} here (holders= lists a model's holders in training "
                        "order, or maps their names)")


def per_holder(est, holder, request) -> list:
    """``request(session)`` on the scoring session of each of the model's holders (from a
    scoring call's ``holder=`` or ``holders=``), in training order."""
    from ..protocol import messages as pm

    pairs = scoring_channels(est, holder)
    out = []
    for part, channel in pairs:
        def run(s, part=part):
            if len(pairs) > 1 and s.holder_name != part.name:
                raise _wrong_holder(s.holder_name, part.name)
            return request(s)
        others = tuple(p.name for p, _ in pairs if p is not part)
        try:
            out.append(est._scoring().run(channel, part.model_id, run, others))
        except SessionNotFound:
            if len(pairs) > 1:  # the model's holders given in another order?
                name = str(as_channel(channel).call(pm.Ping()).holder_name)
                if name != part.name:
                    raise _wrong_holder(name, part.name) from None
            raise
    return out


def all_covered(covers: list) -> np.ndarray | None:
    """Per id, whether every holder had its data and a current consent (None: a holder too
    old to say), from each holder's answer."""
    if any(c is None for c in covers):
        return None
    return np.logical_and.reduce(covers)


def holder_partial_scores(est, ids: list, holder) -> tuple[list[np.ndarray], np.ndarray | None]:
    """Per holder of a linear model (in training order) its partial scores of ``ids``, and
    whether every holder covered each id."""
    from ..protocol.logistic import bank as lr_steps

    got = per_holder(est, holder, lambda s: lr_steps.partial_scores_covered(s, ids))
    return [u for u, _ in got], all_covered([c for _, c in got])

