"""The holder's policy: one dataclass whose fields are the ``[policy]`` keys of ``holder.toml``.

The protocol core enforces the per-request rules (key floor, purposes, banks, node floor,
trees and ids per session, PSI points, session memory); the holder service's middleware
enforces the per-day caps, which need its persistent audit log. Both read this one object,
so a knob has one name, one default and one check, whether it comes from a notebook or
from an operator's file.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, fields

from ..crypto import MIN_SECURE_BITS, PublicKey, load_public_key
from ..errors import InsecureParameters, InvalidInput

#: certificate common names of banks: the identity the holder's consent and audit use
BANK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: the smallest key a test may use once ``allow_insecure_keys`` is set
INSECURE_KEY_FLOOR = 1024


@dataclass
class HolderPolicy:
    """What the holder allows every bank.

    Parameters
    ----------
    allowed_banks : tuple of str or None
        Certificate common names of the banks served; ``None`` serves any bank whose
        certificate the holder's CA signed (in-process use has no certificates).
    allowed_purposes : tuple of str
        Purposes of use a session may name.
    min_node_samples : int
        The smallest set of enterprises any aggregate may describe (a histogram node,
        either side of a split candidate, a WOE bin, an LR batch).
    max_trees_per_session, max_predict_ids, max_psi_points : int
        Per-session and per-request caps.
    max_sessions_per_day, max_trees_per_day : int
        Per bank and UTC day, 0 for no cap; counted from the service's audit log. Scoring
        sessions are not counted (online scoring); the concurrency caps bound them.
    max_concurrent_sessions, max_sessions_per_bank : int
        Open sessions at once, in all and per bank (so one bank cannot lock the others out).
    session_idle_seconds : float
        An idle session is dropped (its memory freed) after this.
    max_session_mib : int
        Ciphertexts one session may hold.
    min_key_bits : int or None
        The smallest key a bank may send; ``None`` means 2048, or 1024 when
        ``allow_insecure_keys`` is set.
    max_key_bits : int
        The largest key a bank may send: a key's size sets the memory and CPU the holder
        spends on it (fixed-base tables, every multiplication), so a bank may not choose it.
    allow_insecure_keys : bool
        Required for any key floor below 2048 bits (tests only).
    min_bin_samples : int
        SecureBoost: the fewest enterprises between any two thresholds of one holder feature
        that the bank can learn sums for at one node (sent, or derived as parent - sibling),
        and the fewest missing values for which both missing-value directions are offered;
        0 turns the rule off (see docs/PRIVACY.md, leak 1).
    max_tree_depth : int
        SecureBoost: the deepest tree a bank may grow; with the node cap (``2 n - 1``) it
        bounds how finely a bank can carve the holder's rows.
    max_learning_rate : float
        Hetero LR: the largest learning rate a bank may set for the holder's weights.
    max_scored_per_day : int
        Distinct enterprises one bank may score per purpose and UTC day (0 for no cap),
        counted by the service in its store: scoring cannot become a bulk export.
    allow_plain_scoring : bool
        SecureBoost: answer plain leaf masks, which show the bank the holder's decision at
        every holder node an enterprise could reach; false leaves only private scoring
        (the bank's ``scoring="private"``), and models too small for it cannot be scored.
    min_private_path_bits : float
        Private SecureBoost scoring: the fewest bits of uncertainty about an enterprise's
        path that a model must leave the bank (log2 of the holder-reachable leaf
        combinations on the worst path); smaller models are refused for private scoring.
    columns : dict or None
        Least and necessary data: bank (or ``"*"``) -> purpose (or ``"*"``) -> the holder
        columns that bank may use for that purpose. ``None`` (no ``[policy.columns]``)
        lets every served bank use every column; once given, a bank and purpose it does not
        match may use none. See :meth:`columns_for`.
    """

    allowed_banks: tuple[str, ...] | None = None
    allowed_purposes: tuple[str, ...] = ("credit",)
    min_node_samples: int = 20
    max_trees_per_session: int = 200
    max_sessions_per_day: int = 100
    max_trees_per_day: int = 2000
    max_concurrent_sessions: int = 16
    max_sessions_per_bank: int = 8
    session_idle_seconds: float = 1800.0
    max_predict_ids: int = 1_000_000
    max_psi_points: int = 20_000_000
    max_session_mib: int = 8192
    min_key_bits: int | None = None
    max_key_bits: int = 4096
    allow_insecure_keys: bool = False
    min_bin_samples: int = 30
    max_tree_depth: int = 10
    max_learning_rate: float = 1.0
    max_scored_per_day: int = 100_000
    min_private_path_bits: float = 32.0
    allow_plain_scoring: bool = True
    columns: dict[str, dict[str, tuple[str, ...]]] | None = None

    def __post_init__(self) -> None:
        if self.allowed_banks is not None:
            self.allowed_banks = tuple(self.allowed_banks)
            for b in self.allowed_banks:
                if not BANK_NAME.fullmatch(b):
                    raise InvalidInput(f"policy.allowed_banks: {b!r} is not a certificate "
                                       "common name of [A-Za-z0-9._-]")
        self.allowed_purposes = tuple(self.allowed_purposes)
        if self.columns is not None:
            self.columns = _column_rules(self.columns)
        if self.min_key_bits is not None and self.min_key_bits < MIN_SECURE_BITS \
                and not self.allow_insecure_keys:
            raise InvalidInput(f"policy.min_key_bits = {self.min_key_bits} is below "
                               f"{MIN_SECURE_BITS}; set allow_insecure_keys = true to allow it "
                               "(tests only)")
        self.check()

    def check(self) -> None:
        """Relations between knobs (each knob's own range is checked where it is read)."""
        if self.max_key_bits < self.key_floor:
            raise InvalidInput(f"policy.max_key_bits = {self.max_key_bits} is below the key "
                               f"floor of {self.key_floor} bits")

    @property
    def key_floor(self) -> int:
        """The smallest key size (bits of n) accepted from a bank."""
        if self.min_key_bits is not None:
            return int(self.min_key_bits)
        return INSECURE_KEY_FLOOR if self.allow_insecure_keys else MIN_SECURE_BITS

    def accept_key(self, key_bytes: bytes, scheme: str, where: str = "session") -> PublicKey:
        """A bank's public key, refused above ``max_key_bits`` before anything is built for
        it, below the key floor, or of another scheme than the message names."""
        key = load_public_key(key_bytes, max_bits=self.max_key_bits)
        if key.scheme != scheme:
            raise InvalidInput(f"the key is a {key.scheme} key, the {where} says {scheme}")
        if key.bits < self.key_floor:
            raise InsecureParameters(f"a {key.bits}-bit key is below the holder's "
                                     f"{self.key_floor}-bit minimum")
        return key

    def columns_for(self, bank: str, purpose: str, available: list[str]) -> list[str]:
        """The columns of ``available`` that ``bank`` may use for ``purpose``, in table order.

        The most specific rule wins: the bank's own entry before ``"*"``, and within it the
        purpose's list before ``"*"``.
        """
        if self.columns is None:
            return list(available)
        entry = self.columns.get(bank, self.columns.get("*"))
        if entry is None:
            return []
        allowed = entry.get(purpose, entry.get("*"))
        if allowed is None:
            return []
        keep = set(allowed)
        return [c for c in available if c in keep]

    @property
    def max_session_bytes(self) -> int:
        return int(self.max_session_mib) << 20

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """The ``[policy]`` keys of ``holder.toml``."""
        return tuple(f.name for f in fields(cls))


def _column_rules(rules) -> dict[str, dict[str, tuple[str, ...]]]:
    """``{bank: {purpose: [columns]}}`` (a bank's list alone means every purpose), checked."""
    if not isinstance(rules, dict):
        raise InvalidInput("policy.columns must map bank names to tables of purposes")
    out: dict[str, dict[str, tuple[str, ...]]] = {}
    for bank, entry in rules.items():
        if bank != "*" and not BANK_NAME.fullmatch(str(bank)):
            raise InvalidInput(f"policy.columns: {bank!r} is not a certificate common name "
                               "of [A-Za-z0-9._-] or \"*\"")
        if isinstance(entry, (list, tuple)):
            entry = {"*": entry}
        if not isinstance(entry, dict):
            raise InvalidInput(f"policy.columns.{bank} must be a list of columns or a table "
                               "of purpose = [columns]")
        out[str(bank)] = {}
        for purpose, cols in entry.items():
            if not isinstance(cols, (list, tuple)) or not all(
                    isinstance(c, str) and c for c in cols):
                raise InvalidInput(f"policy.columns.{bank}.{purpose} must be a list of "
                                   "column names")
            out[str(bank)][str(purpose)] = tuple(cols)
    return out
