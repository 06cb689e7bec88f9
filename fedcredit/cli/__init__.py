"""The ``fedcredit`` command: demo, simulations, synthetic data, certificates, the holder service.

Each subcommand lives in its own module and is registered here; errors fedcredit raises on
purpose print as one clear line (exit 2), anything else as a traceback.
"""
from __future__ import annotations

import argparse
import sys

from ..errors import FedCreditError


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
    from ..holder.devca import make_dev_certs

    kw = {}
    if a.banks:
        kw["bank_names"] = tuple(a.banks)
    if a.hosts:
        kw["holder_hosts"] = tuple(a.hosts)
    files = make_dev_certs(a.out, overwrite=a.overwrite, **kw)
    for name in sorted(files):
        print(files[name])
    return 0


def _add_model_flags(p) -> None:
    p.add_argument("--model", default="secureboost")
    p.add_argument("--trees", type=int, default=5)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--bins", type=int, default=32)
    p.add_argument("--learning-rate", type=float, default=0.3)
    p.add_argument("--key-bits", type=int, default=2048)
    p.add_argument("--insecure-key", action="store_true",
                   help="allow keys below 2048 bits (tests only)")
    p.add_argument("--he-scheme", default="paillier")
    p.add_argument("--workers", type=int, default=None, help="crypto worker processes")


def _simulate(sub) -> None:
    p = sub.add_parser("simulate", help="both parties on this machine; the holder as a gRPC process")
    p.add_argument("--bank-csv", required=True)
    p.add_argument("--holder-csv", required=True)
    p.add_argument("--id-column", required=True)
    p.add_argument("--label-column", required=True)
    p.add_argument("--test-size", type=float, default=0.3)
    p.add_argument("--random-state", type=int, default=0)
    _add_model_flags(p)
    p.add_argument("--predictions-out")
    p.add_argument("--json")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_simulate)


def _cmd_simulate(a) -> int:
    from .simulate import SimulationConfig, format_table, run

    cfg = SimulationConfig(
        bank_csv=a.bank_csv, holder_csv=a.holder_csv, id_column=a.id_column,
        label_column=a.label_column, test_size=a.test_size, random_state=a.random_state,
        model=a.model, trees=a.trees, depth=a.depth, bins=a.bins, learning_rate=a.learning_rate,
        key_bits=a.key_bits, insecure_key=a.insecure_key, he_scheme=a.he_scheme,
        predictions_out=a.predictions_out, json_out=a.json, verbose=not a.quiet,
        n_jobs=a.workers)
    summary = run(cfg)
    print(format_table(summary))
    print(f"aligned {summary['rows_aligned']} rows; federated fit {summary['fit_seconds']:.1f} s")
    return 0


def _demo(sub) -> None:
    p = sub.add_parser("demo", help="synthetic data, a real holder gRPC server, alignment, "
                                    "training and scores, end to end")
    p.add_argument("--rows", type=int, default=10_000)
    p.add_argument("--trees", type=int, default=10)
    p.add_argument("--key-bits", type=int, default=2048)
    p.add_argument("--insecure-key", action="store_true")
    p.add_argument("--out", default=None, help="keep the data, scores and summary here")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(a) -> int:
    from .demo import run_demo

    return run_demo(rows=a.rows, trees=a.trees, key_bits=a.key_bits,
                    insecure_key=a.insecure_key, out=a.out)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="fedcredit",
        description="Vertical federated credit modelling between a bank and a credit-data "
                    "holder: raw data stays home, models are trained jointly.")
    sub = ap.add_subparsers(dest="command")
    _demo(sub)
    _simulate(sub)
    _datasets(sub)
    _certs(sub)
    for module in ("holder_cmds", "bank_cmds", "model_cmds"):
        try:
            mod = __import__(f"{__name__}.{module}", fromlist=["register"])
        except ModuleNotFoundError as e:  # a command group not written yet
            if e.name != f"{__name__}.{module}":
                raise
            continue
        mod.register(sub)
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


if __name__ == "__main__":
    sys.exit(main())
