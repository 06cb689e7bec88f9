"""``fedcredit holder ...``: the platform operator's commands (one holder directory each).

    fedcredit holder init --dir D                      config, store, dev certificates
    fedcredit holder load-features --dir D --csv F --id-column uscc
    fedcredit holder consent import|grant|revoke|list --dir D ...
    fedcredit holder admin token --dir D               the portal admin API's bearer token
    fedcredit holder serve --dir D                     the gRPC service (SIGTERM stops it)
    fedcredit holder audit verify|export --dir D ...
    fedcredit holder stats --dir D                     requests per bank and purpose
    fedcredit holder status --dir D                    what the store holds
    fedcredit holder issue-bank-cert --dir D --bank NAME   (development CA only)

Commands that change the store append an operator record to the audit log. Exit codes:
0 done, 1 refused or check failed (rejected rows, a tampered log), 2 an error.
"""
from __future__ import annotations

import sys
from pathlib import Path

from ..atomic import write_atomic, write_with


def register(sub) -> None:
    p = sub.add_parser("holder", help="the data holder's service: init, features, consent, "
                                      "serve, audit, stats")
    hs = p.add_subparsers(dest="holder_command", required=True)

    s = hs.add_parser("init", help="write holder.toml, an empty store and dev certificates")
    _dir(s)
    s.add_argument("--tls-dir", help="existing certificates (ca.pem, holder.pem, holder.key); "
                                     "without it development ones are made under DIR/tls")
    s.add_argument("--listen", default="127.0.0.1:50051", help="host:port to serve on")
    s.add_argument("--name", default="credit-data-holder", help="holder name shown to banks")
    s.add_argument("--bank", action="append", dest="banks",
                   help="bank certificate name to allow (repeatable; dev certs are made for "
                        "each; default demo-bank without --tls-dir)")
    s.add_argument("--purpose", action="append", dest="purposes",
                   help="allowed purpose (repeatable; default credit)")
    s.add_argument("--force", action="store_true",
                   help="rewrite an existing holder.toml (and dev certs); the store is kept")
    s.set_defaults(func=_init)

    s = hs.add_parser("load-features", help="validate and atomically replace the feature table")
    _dir(s)
    s.add_argument("--csv", "--file", dest="file", required=True,
                   help="CSV file, or Parquet if it ends in .parquet")
    s.add_argument("--id-column", default="uscc")
    s.add_argument("--skip-invalid", action="store_true",
                   help="load the valid rows even if some are rejected (default: refuse the "
                        "whole file and keep the current table)")
    s.add_argument("--rejects-out", help="write every rejected row and its reason to this CSV")
    s.add_argument("--lock-timeout", type=float, default=600.0, metavar="SECONDS",
                   help="loads into one directory run one at a time: wait this long for "
                        "another load to finish, then give up (default 600)")
    s.set_defaults(func=_load_features)

    from . import holder_admin_cmds as consent_cmds  # the consent commands' code is there

    c = hs.add_parser("consent", help="the enterprise-authorisation registry")
    cs = c.add_subparsers(dest="consent_command", required=True)
    s = cs.add_parser("import", help="import consents (uscc,bank,purpose,granted_at,expires_at "
                                     "[,method,evidence,recorded_by]); bank \"*\" = every "
                                     "institution on the platform")
    _dir(s)
    s.add_argument("--csv", required=True)
    s.add_argument("--skip-invalid", action="store_true",
                   help="apply the valid rows even if some are rejected")
    s.add_argument("--rejects-out")
    s.set_defaults(func=consent_cmds.consent_import)
    s = cs.add_parser("grant", help="record one enterprise's consent, with its evidence")
    _dir(s)
    s.add_argument("--uscc", required=True)
    s.add_argument("--bank", required=True, help='a bank\'s certificate name, or "*" for every '
                                                 'institution registered on the platform')
    s.add_argument("--purpose", required=True)
    s.add_argument("--granted-at", required=True, help="ISO 8601 (UTC when no zone is given)")
    s.add_argument("--expires-at", required=True)
    s.add_argument("--method", required=True, choices=("written", "online_real_name"))
    s.add_argument("--evidence", required=True,
                   help="reference to the signed form or the online record (<= 256 chars)")
    s.add_argument("--recorded-by", required=True, help="who recorded the consent")
    s.set_defaults(func=consent_cmds.consent_grant)
    s = cs.add_parser("revoke", help="withdraw an enterprise's consent for a bank (or \"*\": "
                                     "its platform-wide consent)")
    _dir(s)
    s.add_argument("--uscc", required=True)
    s.add_argument("--bank", required=True,
                   help='a bank (withdraws it also from a platform-wide consent), or "*"')
    s.add_argument("--purpose", help="only this purpose (default: all purposes)")
    s.add_argument("--reason", default="", help="why (kept in the audit record)")
    s.add_argument("--recorded-by", default="", help="who recorded the withdrawal")
    s.set_defaults(func=consent_cmds.consent_revoke)
    s = cs.add_parser("list", help="list consents as CSV (scope, status and evidence)")
    _dir(s)
    s.add_argument("--bank", help='only this bank\'s own rows ("*": the platform-wide ones)')
    s.add_argument("--uscc")
    s.add_argument("--status", default="all",
                   choices=("all", "active", "pending", "expired", "revoked"))
    s.set_defaults(func=consent_cmds.consent_list)

    s = hs.add_parser("serve", help="run the holder's gRPC service (mTLS, health checks)")
    _dir(s)
    s.add_argument("--port-file", help="write the port here once listening (for listen "
                                       "addresses with port 0)")
    s.set_defaults(func=_serve)

    a = hs.add_parser("audit", help="the tamper-evident audit log")
    aus = a.add_subparsers(dest="audit_command", required=True)
    s = aus.add_parser(
        "verify", help="recompute the hash chain and check its HMACs with the audit key (exit 1 "
                       "naming the first bad record)",
        description="Recompute the audit chain. With the audit key (an HMAC-SHA256 key kept "
                    "outside the store, default <tls.dir>/audit.key) it proves that no record "
                    "was edited, deleted, reordered, cut from the end or appended by anyone "
                    "without the key. Without the key (file absent) only the plain SHA-256 "
                    "hashes are checked: edits and deletions inside the chain are found, a "
                    "rewritten or cut tail is not. Neither tells a rollback of the whole store "
                    "to an earlier copy: --anchor does.")
    _dir(s)
    s.add_argument("--anchor", action="append", default=[],
                   help="seq:hash recorded earlier outside the holder (repeatable)")
    s.add_argument("--key-file", metavar="PATH",
                   help="the audit chain's HMAC key (default: the holder's own key, "
                        "<tls.dir>/audit.key; if that file is absent only the plain hashes "
                        "are checked)")
    s.set_defaults(func=_audit_verify)
    s = aus.add_parser("export", help="records as JSON lines or CSV")
    _dir(s)
    s.add_argument("--since", help="ISO date/time (UTC) or 7d / 24h / 30m")
    s.add_argument("--until")
    s.add_argument("--format", default="jsonl", choices=("jsonl", "csv"))
    s.add_argument("--out", help="file (default: standard output)")
    s.set_defaults(func=_audit_export)

    s = hs.add_parser("status", help="what the holder's store holds")
    _dir(s)
    s.set_defaults(func=_status)

    s = hs.add_parser("issue-bank-cert", help="a client certificate for a bank, signed by the "
                                              "development CA in DIR/tls")
    _dir(s)
    s.add_argument("--bank", required=True)
    s.add_argument("--overwrite", action="store_true")
    s.set_defaults(func=_issue_cert)

    # the governance commands live in their own modules (they reuse _dir and _open)
    from . import holder_admin_cmds, holder_live_cmds, holder_report_cmds, holder_stats_cmds

    for more in (holder_live_cmds, holder_report_cmds, holder_admin_cmds, holder_stats_cmds):
        more.register(hs)


def _dir(p) -> None:
    p.add_argument("--dir", required=True, help="the holder directory")


def _open(d, create: bool = False):
    from ..holder import config, store

    cfg = config.load_config(d)
    return cfg, store.connect(cfg.db_path, create=create)


# -- init ---------------------------------------------------------------------------------------
def _init(a) -> int:
    from ..errors import InvalidInput
    from ..holder import audit, config, store
    from ..holder.devca import make_dev_certs
    from ..transport.tls import server_credentials

    d = Path(a.dir)
    cfg_path = d / config.CONFIG_NAME
    if cfg_path.exists() and not a.force:
        raise InvalidInput(f"{cfg_path} exists: this directory is already initialised "
                           "(--force rewrites the configuration; the store is kept)")
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    purposes = tuple(a.purposes or ("credit",))
    if a.tls_dir:
        tls = Path(a.tls_dir).resolve()
        server_credentials(tls)  # fail now, naming the file, not at serve time
        banks = a.banks  # None: an empty list, the operator names the banks
        tls_text = str(tls)
    else:
        banks = a.banks or ["demo-bank"]
        make_dev_certs(d / config.TLS_DIR, bank_names=tuple(banks), overwrite=a.force)
        tls_text = config.TLS_DIR
    text = config.render(a.name, a.listen, tls_text, banks, purposes)
    write_atomic(cfg_path, text)
    cfg = config.load_config(d)  # what we wrote must read back
    con = store.connect(cfg.db_path, create=True)
    try:
        audit.holder_key(con)  # made now unless it exists (kept by --force)
        audit.record_operator(con, "init", f"forced={bool(a.force)} listen={cfg.listen} "
                                           f"dev_certs={not a.tls_dir}")
    finally:
        con.close()
    print(f"initialised holder directory {d}")
    print(f"  configuration  {cfg_path}")
    print(f"  store          {cfg.db_path}")
    print(f"  certificates   {cfg.tls_dir}" + ("" if a.tls_dir else "  (development CA)"))
    print(f"  audit key      {audit.key_file(cfg)}  (back it up apart from the store)")
    if banks is None:
        print("  allowed_banks is empty: name the banks' certificate CNs in holder.toml")
    print("next: fedcredit holder load-features --dir ... --csv FEATURES.csv --id-column uscc")
    return 0


# -- features ----------------------------------------------------------------------------------
def _load_features(a) -> int:
    from ..holder import features

    cfg, con = _open(a.dir)
    try:
        r = features.load_features(cfg, con, a.file, a.id_column, skip_invalid=a.skip_invalid,
                                   lock_timeout=a.lock_timeout,
                                   on_wait=lambda msg: print(msg, file=sys.stderr, flush=True))
    finally:
        con.close()
    if r.rejects.count:
        print(r.rejects.report(f"{a.file}"))
        if a.rejects_out:
            r.rejects.write_csv(a.rejects_out)
            print(f"rejected rows written to {a.rejects_out}")
    if not r.applied:
        print(f"load refused: {r.rejects.count} invalid rows; the feature table is unchanged "
              f"(version {r.version}). Fix the file, or pass --skip-invalid to load the "
              f"{r.rows - r.rejects.count} valid rows.")
        return 1
    kinds = list(r.columns.values())
    print(f"loaded {r.loaded} enterprises x {len(kinds)} features "
          f"({kinds.count('numeric')} numeric, {kinds.count('categorical')} categorical) as "
          f"version {r.version}" + (f"; skipped {r.rejects.count} rejected rows"
                                    if r.rejects.count else ""))
    return 0


# -- serve ----------------------------------------------------------------------------------------
def _serve(a) -> int:
    from ..holder.service import serve

    return serve(a.dir, port_file=a.port_file)


# -- audit ----------------------------------------------------------------------------------------
def _audit_verify(a) -> int:
    from ..holder import audit

    anchors = [audit.parse_anchor(x) for x in a.anchor]
    cfg, con = _open(a.dir)
    try:
        path = Path(a.key_file) if a.key_file else audit.key_file(cfg)
        key = audit.read_key(path) if a.key_file or path.exists() else None
        r = audit.verify(con, anchors, key=key)
    finally:
        con.close()
    legacy = r.records - r.keyed
    if not r.ok:
        print(f"AUDIT LOG TAMPERED: {r.problem}", file=sys.stderr)
        print(f"first bad record: seq={r.bad_seq}; {r.records} records before it are intact",
              file=sys.stderr)
        if key is None:
            print(f"(checked without the audit key: {path} not found)", file=sys.stderr)
        return 1
    print(f"audit log intact: {r.records} records; head {r.head_seq}:{r.head_hash}")
    if key is not None:
        print(f"checked with the audit key {path}: no record was edited, deleted, reordered, "
              "cut from the end or appended by anyone without the key")
        if legacy:
            print(f"(records 1-{legacy} predate the key and carry plain SHA-256 hashes only; "
                  + (f"the MAC of record {legacy + 1} covers them too)" if r.keyed else
                     "none carries a MAC)"))
    else:
        print(f"checked WITHOUT the audit key ({path} not found): plain SHA-256 hashes only. "
              "This proves no record inside the chain was edited, deleted or reordered, but "
              "NOT that its tail was not cut or rewritten by someone able to write the "
              "database" + (f"; the MACs of {r.keyed} records were not checked (give "
                            "--key-file)" if r.keyed else ""))
    print("(keep the head somewhere outside this machine; check it later with --anchor: "
          "only an anchor tells a rollback of the whole store to an earlier copy)")
    return 0


def _audit_export(a) -> int:
    from ..holder import audit_report

    _, con = _open(a.dir)
    try:
        if a.out:
            counted = []

            def writer(tmp):
                with open(tmp, "w", newline="", encoding="utf-8") as f:
                    counted.append(audit_report.export(con, a.since, a.until, a.format, f))

            write_with(a.out, writer)
            n = counted[0]
        else:
            n = audit_report.export(con, a.since, a.until, a.format, sys.stdout)
    finally:
        con.close()
    print(f"exported {n} audit records", file=sys.stderr)
    return 0


def _status(a) -> int:
    from ..holder import features

    cfg, con = _open(a.dir)
    try:
        cur = features.current(con)
        consents = dict(con.execute("SELECT CASE WHEN revoked_at IS NOT NULL THEN 'revoked' "
                                    "WHEN expires_at <= strftime('%s','now') THEN 'expired' "
                                    "ELSE 'active' END, COUNT(*) FROM consent GROUP BY 1"))
        models = con.execute("SELECT COUNT(*) FROM models").fetchone()[0]
        sessions = dict(con.execute("SELECT state, COUNT(*) FROM sessions GROUP BY state"))
        head = con.execute("SELECT seq, hash FROM chain_head").fetchone()
        last = con.execute("SELECT ts, operation FROM audit_log ORDER BY seq DESC LIMIT 1"
                           ).fetchone()
        suspended = sorted(r[0] for r in con.execute(
            "SELECT bank FROM bank_status WHERE suspended = 1"))
    finally:
        con.close()
    print(f"holder        {cfg.name} ({cfg.dir})")
    print(f"listen        {cfg.listen}")
    if cur:
        print(f"features      version {cur['version']}: {cur['rows']} enterprises x "
              f"{cur['columns']} columns, loaded {audit_ts(cur['loaded_at'])}")
    else:
        print("features      none loaded")
    print(f"consents      {consents or 'none'}")
    cols = cfg.policy.columns
    print("columns       " + ("every column for every served bank" if cols is None else
                             "; ".join(f"{bank}: " + ", ".join(f"{p}={len(c)}" for p, c in
                                                               rules.items())
                                       for bank, rules in cols.items())))
    print(f"suspended     {', '.join(suspended) or 'none'}")
    print(f"models        {models}")
    print(f"sessions      {sessions or 'none'}")
    print(f"audit log     {head[0] if head else 0} records" +
          (f", last {last[1]} at {last[0]}" if last else ""))
    key = audit_key_file(cfg)
    print(f"audit key     {key}" + ("" if key.exists() else "  (missing)"))
    return 0


def audit_key_file(cfg) -> Path:
    from ..holder import audit

    return audit.key_file(cfg)


def audit_ts(epoch: float) -> str:
    from ..holder.consent import fmt_time

    return fmt_time(epoch)


def _issue_cert(a) -> int:
    from ..holder import audit, config
    from ..holder.devca import issue_bank_cert

    cfg, con = _open(a.dir)
    try:
        files = issue_bank_cert(cfg.tls_dir, a.bank, overwrite=a.overwrite)
        audit.record_operator(con, "issue_bank_cert", f"bank={a.bank}", bank=a.bank)
    finally:
        con.close()
    for p in files.values():
        print(p)
    allowed = cfg.policy.allowed_banks
    if allowed is not None and a.bank not in allowed:
        print(f"note: {a.bank!r} is not in policy.allowed_banks of "
              f"{cfg.dir / config.CONFIG_NAME}; add it and restart the server to serve it")
    return 0
