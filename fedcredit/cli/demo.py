"""``fedcredit demo``: the whole system in one command, on synthetic USCC-keyed data.

Makes a bank table and a holder table, starts a real holder gRPC server process with mutual
TLS on localhost, aligns ids by PSI, trains SecureBoost with a fresh 2048-bit Paillier key,
scores held-out enterprises, and compares with the bank alone and with a centralized model.
With ``--holders 2`` the holder's table is split by source: the platform keeps registration,
tax, social insurance, penalties and court records, a utility company holds the water,
power and gas payments; each is its own holder process. The run itself is
:func:`fedcredit.simulation.run`; this module only narrates it.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("demo", help="synthetic data, a real holder gRPC server, alignment, "
                                    "training and scores, end to end")
    p.add_argument("--rows", type=int, default=10_000)
    p.add_argument("--trees", type=int, default=10)
    p.add_argument("--key-bits", type=int, default=2048)
    p.add_argument("--insecure-key", action="store_true")
    p.add_argument("--holders", type=int, choices=(1, 2), default=1,
                   help="2: the platform and a utility company, each its own holder process")
    p.add_argument("--out", default=None, help="keep the data, scores and summary here")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(a) -> int:
    return run_demo(rows=a.rows, trees=a.trees, key_bits=a.key_bits,
                    insecure_key=a.insecure_key, out=a.out, holders=a.holders)


#: the utility company's columns in ``--holders 2`` (the rest stay with the platform)
UTILITY_PREFIXES = ("water_", "electricity_", "gas_", "utility_")


def split_by_source(holder_csv: Path, base: Path) -> list[str]:
    """The holder table as two holders' tables: ``platform.csv`` and ``utility.csv``."""
    import pandas as pd

    table = pd.read_csv(holder_csv, dtype={"uscc": str})
    utility = [c for c in table.columns if c.startswith(UTILITY_PREFIXES)]
    platform = [c for c in table.columns if c != "uscc" and c not in utility]
    paths = []
    for name, cols in (("platform", platform), ("utility", utility)):
        path = base / f"{name}.csv"
        table[["uscc", *cols]].to_csv(path, index=False)
        paths.append(str(path))
    return paths


def run_demo(rows: int = 10_000, trees: int = 10, key_bits: int = 2048,
             insecure_key: bool = False, out: str | None = None, holders: int = 1) -> int:
    from ..datasets import write_credit_data
    from ..simulation import SimulationConfig, format_table, run

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fedcredit-demo-") as tmp:
        base = Path(out) if out else Path(tmp)
        base.mkdir(parents=True, exist_ok=True)
        print(f"[1/4] synthetic data: {rows} enterprises per party, 80 % overlap -> {base}")
        write_credit_data(base, rows=rows, seed=7, overlap=0.8)
        tables: str | list[str] = str(base / "holder.csv")
        if holders == 2:
            tables = split_by_source(base / "holder.csv", base)
            print("[2/4] starting two holders, each a gRPC server process with mutual TLS on "
                  "127.0.0.1: the platform and a utility company (water, power, gas)")
        else:
            print("[2/4] starting the holder: a gRPC server process with mutual TLS on "
                  "127.0.0.1")
        print(f"[3/4] aligning ids (ECDH-PSI) and training SecureBoost: {trees} trees, depth 3, "
              f"{key_bits}-bit Paillier")
        cfg = SimulationConfig(
            bank_csv=str(base / "bank.csv"), holder_csv=tables,
            id_column="uscc", label_column="label", test_size=0.3, trees=trees, depth=3,
            bins=32, learning_rate=0.3, key_bits=key_bits, insecure_key=insecure_key,
            predictions_out=str(base / "scores.csv"), json_out=str(base / "summary.json"))
        s = run(cfg)
        print(f"[4/4] scored {s['rows_test']} held-out enterprises "
              f"(aligned {s['rows_aligned']} of {s['rows_bank']})")
        print()
        print(format_table(s))
        print()
        top = list(s["feature_importance"].items())[:5]
        print("top features by gain: " + ", ".join(f"{k} ({v:.1f})" for k, v in top))
        print(f"federated training {s['fit_seconds']:.1f} s; demo total "
              f"{time.perf_counter() - t0:.1f} s")
        if out:
            print(f"data, scores.csv and summary.json are in {base}")
    return 0
