"""ECDH private set intersection (X25519 or ristretto255): the bank's and the holder's computations.

Three messages, semi-honest model (each party follows the protocol and may try to learn
more from what it sees):

1. bank -> holder: ``B_i = a*H(x_i)`` for the bank's ids ``x_i``, in the bank's order
   (:meth:`PsiBank.blind`).
2. holder -> bank: ``b*B_i`` in the same order (:meth:`PsiHolder.double_blind`), and
   ``H_j = b*H(y_j)`` for the holder's offered ids ``y_j`` in a secret random order
   (:meth:`PsiHolder.shuffled_points`).
3. bank -> holder: the bank computes ``a*H_j``, matches it against ``b*a*H(x_i)``
   (:meth:`PsiBank.intersect`) and sends the matched holder positions in the order it will
   train in (:meth:`PsiResult.holder_positions_for`); the holder turns them into its ids
   (:meth:`PsiHolder.resolve`).

``a`` and ``b`` are fresh secret scalars; ``H`` maps ``DOMAIN || len(salt) || salt || id``
through SHA-512 and then, in the group ``"ristretto255"``, the element derivation of RFC
9496 (a prime-order group, so no cofactor leaks a bit) or, in ``"x25519"`` (the default,
about 1.5x faster), takes the digest as a u-coordinate of Curve25519 or its twist, whose
cofactor X25519's clamped scalars remove (:mod:`fedcredit.psi.x25519` gives the argument).
Under the decisional Diffie-Hellman assumption in the group with ``H`` a random oracle, a
blinded id is indistinguishable from a random element to anyone without the scalar, and
``a*b*H(x)`` is equal for both parties exactly when the ids are equal. The domain tag keeps
these points apart from any other protocol hashing ids into the same group. The per-session
salt makes each session's ``H`` a new function: fresh scalars already make two sessions'
messages look unrelated, and the salt keeps it so even if a scalar were ever reused or
leaked, and makes any table of ``H`` over the (small, structured) space of USCCs worthless
beyond its session.

What each party learns, in total: the bank learns which of its own ids the holder offered,
and how many ids the holder offered; the holder learns how many ids the bank has, and the
intersection ids the bank asks it to answer for, in the bank's chosen order. Neither learns
anything about the other's ids outside the intersection. Against a malicious party the
protocol gives no such guarantee (e.g. a bank may send points of ids it does not hold, to
test whether the holder offers them); the holder's policy and consent registry, not PSI,
bound what a bank may ask for.
"""
from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import InvalidInput, ProtocolError
from . import group as groups
from ._sodium import POINT_BYTES


def _resolve_workers(workers: int | None) -> int:
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)):
        raise InvalidInput(f"workers must be an integer or None, not {type(workers).__name__}")
    from ..crypto.parallel import resolve_workers

    return resolve_workers(workers)


@dataclass(frozen=True)
class PsiResult:
    """The bank's view of the intersection, in the bank's input order.

    Attributes
    ----------
    ids : list of str
        The bank's ids that the holder also offered, in the order the bank passed them to
        :meth:`PsiBank.blind`.
    bank_positions : list of int
        Each id's position in the bank's input.
    holder_positions : list of int
        Each id's position in the holder's shuffled list; sending this list as it is asks
        the holder for these ids in the bank's input order.
    bank_size, holder_size : int
        How many ids each party put in (the bank learns the holder's count).
    """

    ids: list[str]
    bank_positions: list[int]
    holder_positions: list[int]
    bank_size: int
    holder_size: int
    _holder_position: dict | None = field(default=None, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:  # counts only: the ids are the bank's customers
        return (f"PsiResult(intersection={len(self.ids)}, bank_size={self.bank_size}, "
                f"holder_size={self.holder_size})")

    def holder_positions_for(self, ids: Sequence[str]) -> list[int]:
        """The holder positions to send so the holder answers for ``ids``, in that order.

        Parameters
        ----------
        ids : sequence of str
            Intersection ids in the order the bank will train or score in: a permutation
            of :attr:`ids`, or a subset of them (the holder then learns only that subset).

        Returns
        -------
        list of int
            Positions in the holder's shuffled list, one per id, in the same order.

        Raises
        ------
        InvalidInput
            If an id is not in the intersection or appears twice (the message names its
            position in ``ids``, not its value).

        Privacy
        -------
        The holder learns exactly these ids and this order. Choose an order that says
        nothing the holder should not know (random, or sorted by id), not one sorted by,
        say, loan date or outcome.
        """
        if isinstance(ids, (str, bytes)):
            raise InvalidInput("ids must be a sequence of strings, not a single string")
        if self._holder_position is None:  # built on first use: ~100 bytes per id
            object.__setattr__(self, "_holder_position",
                                dict(zip(self.ids, self.holder_positions)))
        where: dict = self._holder_position or {}
        out: list[int] = []
        seen: set[int] = set()
        for i, x in enumerate(ids):
            pos = where.get(x) if isinstance(x, str) else None
            if pos is None:
                raise InvalidInput(f"ids[{i}] is not in the intersection")
            if pos in seen:
                raise InvalidInput(f"ids[{i}] appears twice")
            seen.add(pos)
            out.append(pos)
        return out


def match_points(bank: bytes, holder: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(i, j) for every bank point ``i`` equal to holder point ``j``, in the bank's order.

    A sort and a binary search over fixed-width keys: about 50 bytes per point, where a
    dictionary of ``bytes`` took about 150 (10M ids: 0.5 GB instead of 1.5 GB). Refuses a
    repeated holder point (naming the first repeat and its original) and two bank points
    that match one holder point (naming the later bank id).
    """
    h = np.frombuffer(holder, dtype=f"S{POINT_BYTES}")
    order = np.argsort(h, kind="stable")  # equal points keep their input order
    hs = h[order]
    same = np.flatnonzero(hs[1:] == hs[:-1])
    if same.size:
        rep = int(order[same + 1].min())  # the first point that repeats an earlier one
        first = int(order[np.searchsorted(hs, h[rep], side="left")])
        raise InvalidInput(f"holder point {rep} repeats holder point {first}")
    b = np.frombuffer(bank, dtype=f"S{POINT_BYTES}")
    if not len(h):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    at = np.minimum(np.searchsorted(hs, b), len(hs) - 1)
    hit = np.flatnonzero(hs[at] == b)
    j = order[at[hit]]
    js = np.argsort(j, kind="stable")
    twice = np.flatnonzero(j[js][1:] == j[js][:-1])
    if twice.size:
        i = int(hit[js[twice + 1]].min())
        raise InvalidInput(f"the holder's answer maps bank id {i} and an earlier one to the "
                           "same element")
    return hit.astype(np.int64), j.astype(np.int64)


class PsiBank:
    """The active party's side of ECDH-PSI (steps 1 and 3).

    Parameters
    ----------
    salt : bytes
        The session salt, 16 to 255 bytes, the same on both sides and new for every
        session (see :func:`fedcredit.psi.new_salt`).
    workers : int or None, optional
        Worker processes for large inputs: ``None`` (default) or 0 uses every core this
        process may run on, -1 likewise, 1 stays in this process.
    group : {"x25519", "ristretto255"}, optional
        The group both parties blind in (they must agree; the alignment protocol sends the
        bank's choice in its first message).

    Notes
    -----
    The secret scalar ``a`` is drawn from ``secrets`` when the object is made and lives
    only in this object and, as a task argument, in the worker processes; use one object
    per session. Semi-honest model: see :mod:`fedcredit.psi.ecdh`.
    """

    def __init__(self, salt: bytes, *, workers: int | None = None,
                 group: str = groups.DEFAULT_GROUP) -> None:
        self.group = groups.check_group(group)
        self._prefix = groups.hash_prefix(salt, self.group)
        self._workers = _resolve_workers(workers)
        self._scalar = groups.random_scalar(self.group)
        self._ids: list[str] | None = None

    def __repr__(self) -> str:
        n = None if self._ids is None else len(self._ids)
        return f"PsiBank(ids={n}, workers={self._workers}, group={self.group!r})"

    @property
    def n_ids(self) -> int | None:
        """How many ids :meth:`blind` received (None before it is called)."""
        return None if self._ids is None else len(self._ids)

    def blind(self, ids: Sequence[str]) -> bytes:
        """Step 1: the bank's ids, hashed and blinded with its secret scalar.

        Parameters
        ----------
        ids : sequence of str
            The bank's ids, unique and non-empty. Their order is the order of
            :attr:`PsiResult.ids`.

        Returns
        -------
        bytes
            ``a*H(id)`` for each id, 32 bytes each, concatenated in input order.

        Raises
        ------
        InvalidInput
            If an id is not a non-empty string or repeats an earlier one.

        Privacy
        -------
        The holder learns how many ids the bank has, and nothing about the ids: without
        ``a`` a blinded id looks like a random group element.
        """
        ids, encoded = groups.encode_ids(ids, "ids")
        out = groups.hash_and_blind(encoded, self._prefix, self._scalar, self._workers,
                                    self.group)
        self._ids = ids
        return out

    def intersect(self, double_blinded: bytes, holder_points: bytes) -> PsiResult:
        """Step 3: find which of the bank's ids the holder offered, and where it put them.

        Parameters
        ----------
        double_blinded : bytes
            The holder's answer to :meth:`blind`: ``b*a*H(x_i)`` in the bank's order.
        holder_points : bytes
            The holder's ``b*H(y_j)`` in its shuffled order
            (:meth:`PsiHolder.shuffled_points`).

        Returns
        -------
        PsiResult
            The intersection in the bank's order with the matching holder positions.

        Raises
        ------
        ProtocolError
            If :meth:`blind` has not been called.
        InvalidInput
            If ``double_blinded`` does not hold one point per bank id, a holder point is
            malformed or the identity (naming its position), or the holder's answer maps
            two ids to one element.

        Privacy
        -------
        Nothing is sent here. The bank learns which of its ids are in the holder's
        offered set, and the holder's set size; the other holder points stay random to it.
        """
        if self._ids is None:
            raise ProtocolError("intersect() needs the bank's ids: call blind() first")
        n_bank = groups.count_points(double_blinded, "double-blinded points")
        if n_bank != len(self._ids):
            raise InvalidInput(f"the holder returned {n_bank} double-blinded points for "
                               f"{len(self._ids)} bank ids")
        mine = groups.blind_points(holder_points, self._scalar, self._workers,
                                   what="holder point", group=self.group)
        bank_pos, holder_pos = match_points(double_blinded, mine)
        ids = [self._ids[i] for i in bank_pos.tolist()]
        return PsiResult(ids, bank_pos.tolist(), holder_pos.tolist(), n_bank,
                         len(mine) // POINT_BYTES)


class PsiHolder:
    """The passive party's side of ECDH-PSI (step 2, and resolving step 3).

    Parameters
    ----------
    salt : bytes
        The session salt, the same as the bank's.
    ids : sequence of str
        The ids the holder offers, unique and non-empty: already restricted to the
        enterprises that authorised this bank for this purpose (the caller's job).
    workers, group : optional
        As for :class:`PsiBank` (``group`` must be the bank's).

    Notes
    -----
    The secret scalar ``b`` and the secret shuffle of the offered ids are drawn from
    ``secrets`` when the object is made; use one object per session.
    """

    def __init__(self, salt: bytes, ids: Sequence[str], *, workers: int | None = None,
                 group: str = groups.DEFAULT_GROUP) -> None:
        self.group = groups.check_group(group)
        self._prefix = groups.hash_prefix(salt, self.group)
        self._workers = _resolve_workers(workers)
        self._ids, self._encoded = groups.encode_ids(ids, "ids")
        self._scalar = groups.random_scalar(self.group)
        # position in the shuffled list -> index in self._ids; sorting by 64-bit keys from
        # the OS is a uniform shuffle up to ties (probability below n^2 / 2^65)
        keys = np.frombuffer(secrets.token_bytes(8 * len(self._ids)), dtype=np.uint64)
        self._order = np.argsort(keys, kind="stable")
        self._points: bytes | None = None

    def __repr__(self) -> str:
        return f"PsiHolder(ids={len(self._ids)}, workers={self._workers}, group={self.group!r})"

    @property
    def n_ids(self) -> int:
        """How many ids the holder offers."""
        return len(self._ids)

    def double_blind(self, bank_points: bytes, *, offset: int = 0) -> bytes:
        """Step 2a: blind the bank's points again with the holder's scalar, in order.

        Parameters
        ----------
        bank_points : bytes
            The bank's ``a*H(x_i)`` (:meth:`PsiBank.blind`), all of them or one chunk.
        offset : int, optional
            Position of the first point of this chunk in the bank's whole list; used only
            to name a bad point's position in the error.

        Returns
        -------
        bytes
            ``b*a*H(x_i)``, 32 bytes each, in the same order.

        Raises
        ------
        InvalidInput
            At the first point that is cut short, not a canonical encoding, or the
            identity element (x25519: of small order), naming its position.

        Privacy
        -------
        The holder learns how many ids the bank sent. The bank can compare the answer
        with :meth:`shuffled_points` only after blinding those with its own scalar, which
        reveals equality and nothing else; every point is validated first, so a crafted
        point cannot pull anything about ``b`` out of the answer.
        """
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise InvalidInput("offset must be a non-negative integer")
        return groups.blind_points(bank_points, self._scalar, self._workers,
                                   what="bank point", offset=offset, group=self.group)

    def shuffled_points(self) -> bytes:
        """Step 2b: the holder's offered ids, hashed and blinded, in a secret random order.

        Computed on the first call; later calls return the same bytes.

        Returns
        -------
        bytes
            ``b*H(y)`` for each offered id, 32 bytes each, in the shuffled order.

        Privacy
        -------
        The bank learns how many ids the holder offers and, after step 3, which of its
        own ids are among them and at which shuffled positions. The shuffle is what keeps
        those positions meaningless: in input order (say, sorted by USCC or by
        registration date) they would tell the bank where its customers sit among
        enterprises it does not know.
        """
        if self._points is None:
            shuffled = [self._encoded[k] for k in self._order.tolist()]
            self._points = groups.hash_and_blind(shuffled, self._prefix, self._scalar,
                                                 self._workers, self.group)
            self._encoded = []  # hashed once; ~60 bytes per id no longer held to alignment
        return self._points

    def resolve(self, positions: Sequence[int]) -> list[str]:
        """Step 3, holder side: the ids at the bank's chosen positions, in the bank's order.

        Parameters
        ----------
        positions : sequence of int
            Positions in the list :meth:`shuffled_points` returned
            (:meth:`PsiResult.holder_positions_for` on the bank's side).

        Returns
        -------
        list of str
            The holder's ids for those positions, in the same order: the ids it will
            answer for in training or scoring.

        Raises
        ------
        ProtocolError
            If :meth:`shuffled_points` has not been sent yet.
        InvalidInput
            If a position is not an integer, is out of range, or repeats (the message
            names the index in ``positions``).

        Privacy
        -------
        The holder learns the intersection ids the bank asks for, and their order;
        nothing about the bank's other ids.
        """
        if self._points is None:
            raise ProtocolError("resolve() before shuffled_points(): the bank cannot have "
                                "positions in a list it never received")
        if isinstance(positions, (str, bytes, bytearray)):
            raise InvalidInput("positions must be a sequence of integers")
        pos = list(positions)
        n = len(self._ids)
        seen = np.zeros(n, dtype=bool)
        out: list[str] = []
        order = self._order
        for i, p in enumerate(pos):
            if isinstance(p, (bool, np.bool_)) or not isinstance(p, (int, np.integer)):
                raise InvalidInput(f"positions[{i}] is a {type(p).__name__}, not an integer")
            if not 0 <= p < n:
                raise InvalidInput(f"positions[{i}] = {int(p)} is outside 0..{n - 1}")
            if seen[p]:
                raise InvalidInput(f"positions[{i}] = {int(p)} appears twice")
            seen[p] = True
            out.append(self._ids[order[p]])
        return out
