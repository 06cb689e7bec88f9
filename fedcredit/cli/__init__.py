"""The ``fedcredit`` command: demo, simulations, synthetic data, certificates, the holder service.

The demo, simulations, the holder's and the bank's commands live in their own modules; the
two small ones (``datasets``, ``certs``) are here. Errors fedcredit raises on purpose print
as one clear line (exit 2), and so do the environment's (a full disk, a file that cannot be
written or read: exit 1); anything else, a bug, as a traceback.
"""
from __future__ import annotations

import argparse
import errno
import sqlite3
import sys

from ..errors import FedCreditError
from . import bank_cmds, demo, holder_cmds, simulate


def _datasets(sub) -> None:
    p = sub.add_parser("datasets", help="synthetic data and shared data sets")
    ds = p.add_subparsers(dest="datasets_command", required=True)
    s = ds.add_parser("synth", help="write a synthetic bank/holder pair keyed by USCC")
    s.add_argument("--rows", type=int, required=True, help="rows per party (1,000 to 10,000,000)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--overlap", type=float, default=0.8,
                   help="fraction of the bank's enterprises the holder also has")
    s.add_argument("--out", required=True, help="directory for bank.csv and holder.csv")
    s.set_defaults(func=_cmd_synth)


def _cmd_synth(a) -> int:
    from ..datasets import write_credit_data

    info = write_credit_data(a.out, rows=a.rows, seed=a.seed, overlap=a.overlap)
    print({k: str(v) for k, v in info.items()} if isinstance(info, dict) else info)
    return 0


def _certs(sub) -> None:
    p = sub.add_parser("certs", help="certificates for mutual TLS")
    cs = p.add_subparsers(dest="certs_command", required=True)
    d = cs.add_parser("dev", help="a development CA, a holder server cert and bank client certs")
    d.add_argument("--out", required=True)
    d.add_argument("--bank", action="append", dest="banks", help="bank name (repeatable)")
    d.add_argument("--host", action="append", dest="hosts",
                   help="holder host name or IP (repeatable; default localhost, 127.0.0.1, ::1)")
    d.add_argument("--overwrite", action="store_true")
    d.set_defaults(func=_cmd_certs_dev)


def _cmd_certs_dev(a) -> int:
    from ..holder.devca import DEV_BANK_NAMES, DEV_HOLDER_HOSTS, make_dev_certs

    files = make_dev_certs(a.out, overwrite=a.overwrite,
                           bank_names=tuple(a.banks) if a.banks else DEV_BANK_NAMES,
                           holder_hosts=tuple(a.hosts) if a.hosts else DEV_HOLDER_HOSTS)
    for name in sorted(files):
        print(files[name])
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="fedcredit",
        description="Vertical federated credit modelling between a bank and a credit-data "
                    "holder: raw data stays home, models are trained jointly.")
    sub = ap.add_subparsers(dest="command")
    demo.register(sub)
    simulate.register(sub)
    _datasets(sub)
    _certs(sub)
    holder_cmds.register(sub)
    bank_cmds.register(sub)
    return ap


def main(argv=None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    if not getattr(args, "func", None):
        ap.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except FedCreditError as e:
        print(f"fedcredit: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fedcredit: interrupted", file=sys.stderr)
        return 130
    except (OSError, sqlite3.OperationalError) as e:
        print(f"fedcredit: error: {_environment_error(e)}", file=sys.stderr)
        return 1


def _environment_error(e: BaseException) -> str:
    """One line for an error of the machine rather than of fedcredit."""
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        where = f" writing {e.filename}" if getattr(e, "filename", None) else ""
        return f"the disk is full{where} ({e.strerror or e}); nothing was changed"
    if isinstance(e, sqlite3.OperationalError):
        return f"the holder's store cannot be written: {e}"
    return str(e)
