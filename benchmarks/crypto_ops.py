#!/usr/bin/env python
"""Homomorphic-encryption kernel speed against python-paillier (phe), in one run.

    python benchmarks/crypto_ops.py --key-bits 2048 --json results/crypto_ops.json

Rates are operations per second on one core unless the name says ``parallel`` (all cores).
``phe_*`` rows go through phe's own ``EncryptedNumber`` objects on the same key size, so the
ratios compare like with like on this machine, whatever its load today. Writes JSON and, next
to it, a Markdown table (``.md``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

import numpy as np
from phe import paillier as phe_paillier

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fedcredit.crypto import SCHEMES, EncryptedHistogram, generate_keypair  # noqa: E402
from fedcredit.crypto.parallel import default_workers  # noqa: E402


def rate(fn, count: int, min_seconds: float = 0.0) -> float:
    """Operations per second of ``fn()`` doing ``count`` operations (repeated to min_seconds)."""
    reps, total = 0, 0.0
    while True:
        t = time.perf_counter()
        fn()
        total += time.perf_counter() - t
        reps += 1
        if total >= min_seconds:
            return reps * count / total


def bench_phe(bits: int, n_enc: int, n_add: int, n_dec: int) -> dict:
    pub, priv = phe_paillier.generate_paillier_keypair(n_length=bits)
    values = [random.randrange(-2**40, 2**40) for _ in range(n_enc)]
    out = {"phe_encrypt_per_s": rate(lambda: [pub.encrypt(v) for v in values], n_enc, 2.0)}
    encs = [pub.encrypt(v) for v in values[: max(2, min(n_enc, 16))]]
    pairs = [(encs[i % len(encs)], encs[(i * 7 + 3) % len(encs)]) for i in range(n_add)]
    out["phe_add_per_s"] = rate(lambda: [a + b for a, b in pairs], n_add, 1.0)
    dec = [encs[i % len(encs)] for i in range(n_dec)]
    out["phe_decrypt_per_s"] = rate(lambda: [priv.decrypt(e) for e in dec], n_dec, 1.0)
    return out


def bench_scheme(scheme: str, bits: int, n_enc: int, n_add: int, n_dec: int, workers: int) -> dict:
    t = time.perf_counter()
    pk, sk = generate_keypair(scheme, bits=bits, insecure=bits < 2048)
    keygen = time.perf_counter() - t
    values = [random.randrange(-2**40, 2**40) for _ in range(n_enc)]
    t = time.perf_counter()
    sk.encrypt(values[:8], workers=1)  # builds the fixed-base tables
    table = time.perf_counter() - t
    prefix = "" if scheme == "paillier" else f"{scheme}_"
    out = {f"{prefix}keygen_s": keygen, f"{prefix}table_build_s": table}
    out[f"{prefix}encrypt_per_s"] = rate(lambda: sk.encrypt(values, workers=1), n_enc, 2.0)
    big = values * max(1, (4 * workers * 1024) // max(1, n_enc))
    sk.encrypt(big[: 2 * workers * 1024], workers=workers)  # start workers, build their tables
    out[f"{prefix}encrypt_parallel_per_s"] = rate(lambda: sk.encrypt(big, workers=workers),
                                                  len(big), 2.0)
    cts = sk.encrypt(values, workers=1)
    # the histogram kernel as production runs it (EncryptedHistogram): one feature, n
    # ciphertexts into 32 bins (n - 32 additions), and a node of 8 features x 33 bins, counted
    # as rows x features (what a naive kernel would add; joint cells add fewer)
    hist = cts
    while len(hist) < n_add:
        hist = type(cts).concat([hist, cts])
    groups = [random.randrange(32) for _ in range(len(hist))]
    out[f"{prefix}hist_add_per_s"] = rate(lambda: pk.grouped_sum(hist, groups, 32),
                                          len(hist) - 32, 1.0)
    node_bins = np.array([[random.randrange(33) for _ in range(8)] for _ in range(len(hist))],
                         dtype=np.int64)
    sizes = np.full(8, 33, dtype=np.int64)
    offsets = np.arange(8, dtype=np.int64) * 33

    def node_histogram():
        h = EncryptedHistogram(pk, node_bins, sizes, offsets)
        h.add(hist)
        return h.finish()

    out[f"{prefix}hist_node_row_features_per_s"] = rate(node_histogram, 8 * len(hist), 1.0)
    dec = cts[:n_dec]
    out[f"{prefix}decrypt_per_s"] = rate(lambda: sk.decrypt(dec, workers=1), len(dec), 1.0)
    out[f"{prefix}rerandomize_per_s"] = rate(lambda: pk.rerandomize(dec[:20]), 20, 0.5)
    out[f"{prefix}exponent_bits"] = getattr(pk, "exponent_bits", None)
    out[f"{prefix}plaintext_bits"] = pk.plaintext_bits
    out[f"{prefix}ciphertext_bytes"] = pk.ciphertext_bytes
    return out


def markdown(d: dict) -> str:
    rows = ["| metric | value |", "| --- | --- |"]
    for k, v in d.items():
        if isinstance(v, float):
            v = f"{v:,.1f}" if v >= 10 else f"{v:.3f}"
        rows.append(f"| {k} | {v} |")
    return "\n".join(rows) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--key-bits", type=int, default=2048)
    ap.add_argument("--schemes", default=",".join(SCHEMES),
                    help=f"comma-separated, from {SCHEMES}")
    ap.add_argument("--n-encrypt", type=int, default=2000)
    ap.add_argument("--n-add", type=int, default=20000)
    ap.add_argument("--n-decrypt", type=int, default=200)
    ap.add_argument("--workers", type=int, default=0, help="0 = all cores")
    ap.add_argument("--json", default="benchmarks/results/crypto_ops.json")
    a = ap.parse_args(argv)
    workers = a.workers or default_workers()
    res = {"key_bits": a.key_bits, "cores": workers, "machine": platform.processor() or
           platform.machine(), "python": platform.python_version()}
    res.update(bench_phe(a.key_bits, max(20, a.n_encrypt // 40), a.n_add, min(a.n_decrypt, 100)))
    for scheme in a.schemes.split(","):
        res.update(bench_scheme(scheme, a.key_bits, a.n_encrypt, a.n_add, a.n_decrypt, workers))
    res["loadavg_1min"] = os.getloadavg()[0]  # a shared machine: compare within one run
    schemes = a.schemes.split(",")
    for scheme in schemes:
        pre = "" if scheme == "paillier" else f"{scheme}_"
        res[f"{pre}encrypt_vs_phe"] = res[f"{pre}encrypt_per_s"] / res["phe_encrypt_per_s"]
        res[f"{pre}hist_add_vs_phe"] = res[f"{pre}hist_add_per_s"] / res["phe_add_per_s"]
        res[f"{pre}decrypt_vs_phe"] = res[f"{pre}decrypt_per_s"] / res["phe_decrypt_per_s"]
        if pre and "paillier" in schemes:
            for op in ("encrypt", "encrypt_parallel", "hist_add", "decrypt", "rerandomize"):
                res[f"{pre}{op}_vs_paillier"] = res[f"{pre}{op}_per_s"] / res[f"{op}_per_s"]
    out = Path(a.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    out.with_suffix(".md").write_text(
        f"# Crypto kernels, {a.key_bits}-bit keys ({workers} cores)\n\n" + markdown(res))
    print(markdown(res))
    for scheme in schemes:
        pre = "" if scheme == "paillier" else f"{scheme}_"
        print(f"{scheme}: encrypt {res[pre + 'encrypt_vs_phe']:.1f}x phe, hist add "
              f"{res[pre + 'hist_add_vs_phe']:.2f}x phe, "
              f"decrypt {res[pre + 'decrypt_vs_phe']:.2f}x phe")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
