"""Changes a running holder applies without a restart: a reloaded policy, a suspended bank.

Operator commands run in their own processes (``fedcredit holder policy reload``,
``fedcredit holder bank suspend``); they reach the server through the store, which both
share. Each change is one write transaction that records it (``bank_status`` or the checked
policy file's digest), appends an operator record to the audit chain and bumps the
``policy_generation`` counter in ``meta``. The server reads that counter at every request
(one indexed read) and by its maintenance thread, so a change takes effect at the next
request of any bank, and open sessions it no longer allows are closed (and audited) even if
no request comes.

A reload is checked before it is announced: a ``holder.toml`` that does not load changes
nothing, and the running server keeps its policy.
"""
from __future__ import annotations

import hashlib
import sqlite3
import time
from dataclasses import dataclass

from ..errors import InvalidInput
from ..protocol.policy import BANK_NAME, HolderPolicy
from . import audit
from .config import CONFIG_NAME, HolderConfig, load_config
from .store import write

GENERATION_KEY = "policy_generation"


@dataclass(frozen=True)
class LiveState:
    """What the server applies: the store's generation, the policy and suspended banks."""

    generation: int
    policy: HolderPolicy
    suspended: frozenset[str]


def generation(con: sqlite3.Connection) -> int:
    row = con.execute("SELECT value FROM meta WHERE key = ?", (GENERATION_KEY,)).fetchone()
    return int(row[0]) if row else 0


def _bump(con: sqlite3.Connection) -> int:
    """The next generation, inside the caller's write transaction."""
    nxt = generation(con) + 1
    con.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET "
                "value = excluded.value", (GENERATION_KEY, str(nxt)))
    return nxt


def policy_digest(cfg: HolderConfig) -> str:
    """SHA-256 of the ``holder.toml`` a reload applied (recorded in the audit chain)."""
    return hashlib.sha256((cfg.dir / CONFIG_NAME).read_bytes()).hexdigest()


def request_reload(con: sqlite3.Connection, cfg_dir, source: str = "cli") -> tuple[int, str]:
    """Check ``holder.toml`` and announce it to the server; returns (generation, digest).

    Raises InvalidInput (naming the key) for a file that does not load: nothing changes.
    """
    cfg = load_config(cfg_dir)
    digest = policy_digest(cfg)
    with write(con):
        gen = _bump(con)
        audit.append(con, actor=audit.operator(), operation="policy_reload",
                     detail=f"generation={gen} sha256={digest[:32]} source={source}")
    return gen, digest


def _check_bank(bank: str) -> str:
    if not BANK_NAME.fullmatch(bank or ""):
        raise InvalidInput(f"--bank {bank!r} is not a certificate common name "
                           "([A-Za-z0-9._-], at most 64 characters)")
    return bank


def set_suspended(con: sqlite3.Connection, bank: str, suspended: bool,
                  reason: str = "") -> int:
    """Suspend or resume ``bank``; returns the generation that carries the change.

    Suspending an already suspended bank (or resuming an active one) is refused, so the
    audit chain holds one record per real change."""
    _check_bank(bank)
    if len(reason) > 500:
        raise InvalidInput("--reason is longer than 500 characters")
    with write(con):
        row = con.execute("SELECT suspended FROM bank_status WHERE bank = ?",
                          (bank,)).fetchone()
        now_suspended = bool(row and row[0])
        if now_suspended == suspended:
            raise InvalidInput(f"bank {bank!r} is already "
                               f"{'suspended' if suspended else 'active (not suspended)'}")
        con.execute("INSERT INTO bank_status (bank, suspended, changed_at, reason) VALUES "
                    "(?,?,?,?) ON CONFLICT(bank) DO UPDATE SET suspended = excluded.suspended, "
                    "changed_at = excluded.changed_at, reason = excluded.reason",
                    (bank, int(suspended), time.time(), reason))
        gen = _bump(con)
        audit.append(con, actor=audit.operator(), bank=bank,
                     operation="bank_suspend" if suspended else "bank_resume",
                     detail=f"generation={gen}" + (f" reason={reason}" if reason else ""))
    return gen


def suspended_banks(con: sqlite3.Connection) -> frozenset[str]:
    return frozenset(r[0] for r in con.execute(
        "SELECT bank FROM bank_status WHERE suspended = 1"))


def bank_rows(con: sqlite3.Connection) -> list[tuple[str, bool, float, str]]:
    """Every bank the operator ever suspended: (bank, suspended now, since, reason)."""
    return [(b, bool(s), float(t), r) for b, s, t, r in con.execute(
        "SELECT bank, suspended, changed_at, reason FROM bank_status ORDER BY bank")]


def disallowed_reason(s, state: LiveState, columns_now: list[str]) -> str:
    """Why an open session may not go on under ``state`` ("" when it may)."""
    pol = state.policy
    if s.bank in state.suspended:
        return "bank_suspended"
    if pol.allowed_banks is not None and s.bank not in pol.allowed_banks:
        return "bank_no_longer_served"
    if s.purpose not in pol.allowed_purposes:
        return "purpose_no_longer_allowed"
    if not set(s.columns) <= set(columns_now):
        return "columns_narrowed"
    return ""
