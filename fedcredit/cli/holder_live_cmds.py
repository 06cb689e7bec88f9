"""``fedcredit holder policy reload`` and ``fedcredit holder bank suspend|resume|list``:
changes the running server applies at the next request, without a restart."""
from __future__ import annotations

from .holder_cmds import _dir, _open, audit_ts


def register(hs) -> None:
    """Add this module's commands to ``fedcredit holder``."""
    p = hs.add_parser("policy", help="apply holder.toml's [policy] to the running server")
    ps = p.add_subparsers(dest="policy_command", required=True)
    s = ps.add_parser(
        "reload", help="check holder.toml and have the running server apply its [policy] "
                       "(banks, purposes, columns, caps) at its next request",
        description="Checks holder.toml (a file that does not load changes nothing), records "
                    "the reload in the audit log, and tells the running server through the "
                    "store: it applies the new [policy] at its next request, and closes (and "
                    "audits) open sessions the new policy no longer allows. SIGHUP to the "
                    "server does the same. Other sections need a restart.")
    _dir(s)
    s.set_defaults(func=_policy_reload)

    b = hs.add_parser("bank", help="suspend or resume a bank without a restart")
    bs = b.add_subparsers(dest="bank_command", required=True)
    for name, text in (("suspend", "refuse the bank from its next request; its open sessions "
                                   "are closed and audited"),
                       ("resume", "serve a suspended bank again")):
        s = bs.add_parser(name, help=text)
        _dir(s)
        s.add_argument("--bank", required=True, help="the bank's certificate common name")
        s.add_argument("--reason", default="", help="recorded in the audit log")
        s.set_defaults(func=_bank_change, suspend=name == "suspend")
    s = bs.add_parser("list", help="banks ever suspended, and their state")
    _dir(s)
    s.set_defaults(func=_bank_list)


def _policy_reload(a) -> int:
    from ..holder import live

    cfg, con = _open(a.dir)
    try:
        gen, digest = live.request_reload(con, cfg.dir)
    finally:
        con.close()
    print(f"policy reload recorded (generation {gen}, holder.toml sha256 {digest[:16]}); "
          "the running server applies it at its next request")
    return 0


def _bank_change(a) -> int:
    from ..holder import live

    _, con = _open(a.dir)
    try:
        gen = live.set_suspended(con, a.bank, a.suspend, a.reason)
    finally:
        con.close()
    what = "suspended" if a.suspend else "resumed"
    print(f"bank {a.bank} {what} (generation {gen}); the running server applies it at the "
          "next request")
    return 0


def _bank_list(a) -> int:
    from ..holder import live

    _, con = _open(a.dir)
    try:
        rows = live.bank_rows(con)
    finally:
        con.close()
    if not rows:
        print("no bank has been suspended")
        return 0
    for bank, suspended, since, reason in rows:
        state = "suspended" if suspended else "active"
        print(f"{bank:24} {state:10} since {audit_ts(since)}" + (f"  {reason}" if reason else ""))
    return 0
