"""``fedcredit simulate``: both parties on this machine, the holder a separate gRPC process.

Argument parsing only; the harness (data, the holder process, models, baselines, the JSON
summary) is :mod:`fedcredit.simulation`.
"""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("simulate",
                       help="both parties on this machine; each holder as a gRPC process")
    p.add_argument("--bank-csv", required=True)
    p.add_argument("--holder-csv", required=True, action="append",
                   help="a holder's table; repeat for several holders (one process each, "
                        "named after its file; --model secureboost or woe)")
    p.add_argument("--id-column", required=True)
    p.add_argument("--label-column", required=True)
    p.add_argument("--test-size", type=float, default=0.3)
    p.add_argument("--random-state", type=int, default=0)
    _add_model_flags(p)
    p.add_argument("--predictions-out")
    p.add_argument("--json")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_simulate)


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
    p.add_argument("--workers", type=int, default=None,
                   help="crypto worker processes (--engine dask: Dask workers per party)")
    p.add_argument("--engine", choices=("local", "dask"), default="local",
                   help="dask: each party's crypto on its own Dask LocalCluster (TLS)")
    p.add_argument("--bank-only-trees", type=int, default=None,
                   help="SecureBoost: first k trees on the bank's features alone, never sent "
                        "to the holder (default: the model's, 1)")
    p.add_argument("--align", choices=("all", "any"), default="all",
                   help="several holders: train on the enterprises every holder serves "
                        "(all) or at least one serves (any; --model secureboost)")


def _cmd_simulate(a) -> int:
    from ..simulation import SimulationConfig, format_table, run

    cfg = SimulationConfig(
        bank_csv=a.bank_csv,
        holder_csv=a.holder_csv[0] if len(a.holder_csv) == 1 else a.holder_csv,
        id_column=a.id_column,
        label_column=a.label_column, test_size=a.test_size, random_state=a.random_state,
        model=a.model, trees=a.trees, depth=a.depth, bins=a.bins, learning_rate=a.learning_rate,
        key_bits=a.key_bits, insecure_key=a.insecure_key, he_scheme=a.he_scheme,
        predictions_out=a.predictions_out, json_out=a.json, verbose=not a.quiet,
        n_jobs=a.workers, bank_only_trees=a.bank_only_trees, align=a.align, engine=a.engine)
    summary = run(cfg)
    print(format_table(summary))
    print(f"aligned {summary['rows_aligned']} rows; federated fit {summary['fit_seconds']:.1f} s")
    return 0
