"""``fedcredit holder consent import|grant|revoke|list`` and ``fedcredit holder admin token``:
the consent registry as the operator keeps it, and the credential of the platform portal's
admin API (which grants and withdraws the same consents over HTTP, see
:mod:`fedcredit.holder.admin`)."""
from __future__ import annotations

import sys
import time

from .holder_cmds import _dir, _open


def register(hs) -> None:
    """Add this module's commands to ``fedcredit holder`` (the consent parsers are in
    ``holder_cmds``, beside the other registry commands; their code is here)."""
    p = hs.add_parser("admin", help="the platform portal's consent API (HTTP JSON)")
    ads = p.add_subparsers(dest="admin_command", required=True)
    s = ads.add_parser(
        "token", help="make the admin API's bearer token (printed once; replaces the old one)",
        description="Makes a new random bearer token for the admin API and prints it once. "
                    "Only its SHA-256 is kept (in the store), so a lost token cannot be "
                    "shown again: make a new one. The previous token stops working at once, "
                    "also in a running server. The change is recorded in the audit log.")
    _dir(s)
    s.set_defaults(func=_admin_token)


def _admin_token(a) -> int:
    from ..holder import admin

    cfg, con = _open(a.dir)
    try:
        token, replaced = admin.new_token(con)
    finally:
        con.close()
    print(token)
    print(f"admin API token{' replaced: the previous one no longer works' if replaced else ''}"
          f"; fingerprint {admin.token_digest(token)[:12]}. Shown once: give it to the portal "
          f"as 'Authorization: Bearer <token>'" + ("" if cfg.admin_listen else
                                                   "; [admin] listen is empty (API off)"),
          file=sys.stderr)
    return 0


# -- consent ------------------------------------------------------------------------------------
def consent_import(a) -> int:
    from ..holder import consent

    cfg, con = _open(a.dir)
    try:
        r = consent.import_consents(con, a.csv, cfg.policy.allowed_purposes,
                                    skip_invalid=a.skip_invalid)
    finally:
        con.close()
    if r.rejects.count:
        print(r.rejects.report(a.csv))
        if a.rejects_out:
            r.rejects.write_csv(a.rejects_out)
    if not r.applied:
        print(f"import refused: {r.rejects.count} invalid rows; the registry is unchanged. "
              "Fix the file, or pass --skip-invalid to apply the valid rows.")
        return 1
    print(f"imported {r.imported} consents" +
          (f" ({r.reactivated} re-granted after a revocation)" if r.reactivated else "") +
          (f"; skipped {r.rejects.count} rejected rows" if r.rejects.count else ""))
    return 0


def consent_grant(a) -> int:
    from ..errors import InvalidInput
    from ..holder import audit, consent, store

    cfg, con = _open(a.dir)
    now = time.time()
    values = {"uscc": a.uscc, "bank": a.bank, "purpose": a.purpose, "granted_at": a.granted_at,
              "expires_at": a.expires_at, "method": a.method, "evidence": a.evidence,
              "recorded_by": a.recorded_by}
    try:
        with store.write(con):
            g, problems = consent.check_grant(con, values, cfg.policy.allowed_purposes, now)
            if g is None:
                raise InvalidInput("; ".join(f"--{(f or 'uscc').replace('_', '-')}: {why}"
                                             for f, why in problems))
            how = consent.apply_grant(con, g, now, "cli")
            audit.append(con, actor=audit.operator(), operation="consent_grant", bank=g.bank,
                         purpose=g.purpose, enterprises=1,
                         detail=f"uscc={g.uscc} {how} method={g.method} evidence={g.evidence} "
                                f"recorded_by={g.recorded_by}")
    finally:
        con.close()
    scope = "every institution on the platform" if g.bank == "*" else f"bank {g.bank}"
    print(f"{how} the consent of {g.uscc} for {scope}, purpose {g.purpose}, until "
          f"{consent.fmt_time(g.expires_at)}; effective from the bank's next request")
    return 0


def consent_revoke(a) -> int:
    from ..holder import consent

    bank = a.bank.strip()
    _, con = _open(a.dir)
    try:
        now, _ = consent.revoke(con, a.uscc.strip(), bank, a.purpose, reason=a.reason.strip(),
                                recorded_by=a.recorded_by.strip())
    finally:
        con.close()
    who = "the platform-wide consent" if bank == "*" else f"bank {bank}"
    if now:
        print(f"revoked {now} consent(s) of {a.uscc} for {who}; effective from the bank's "
              "next request")
    else:
        print(f"the consent(s) of {a.uscc} for {who} were already revoked")
    return 0


def consent_list(a) -> int:
    from ..holder import consent

    _, con = _open(a.dir)
    try:
        df = consent.list_consents(con, bank=a.bank, uscc=a.uscc, state=a.status)
    finally:
        con.close()
    try:
        df.to_csv(sys.stdout, index=False)
    except BrokenPipeError:  # `... | head`: the reader has what it wanted
        sys.stderr.close()
        return 0
    counts = df["status"].value_counts().to_dict() if len(df) else {}
    print(f"{len(df)} consents: " + (", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
                                     or "none"), file=sys.stderr)
    return 0
