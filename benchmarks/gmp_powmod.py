#!/usr/bin/env python
"""The cost of the modular exponentiation every encryption is made of, under this
interpreter's gmpy2 (and the GMP it was built against).

    python benchmarks/gmp_powmod.py --json benchmarks/results/gmp_powmod.json

Times ``powmod(base, e, N)`` for a 4096-bit N (a 2048-bit Paillier key's n**2) and a
448-bit exponent (the short exponents of the DJN randomisers), and for a 2048-bit N (OU),
best of ``--repeat`` rounds of ``--count`` calls. Run it once under the PyPI wheel and once
under gmpy2 built from source against the system's libgmp (``pip install --no-binary
gmpy2 gmpy2`` with ``libgmp-dev libmpfr-dev libmpc-dev`` installed) to compare the two.
"""
from __future__ import annotations

import argparse
import json
import platform
import random
import time
from pathlib import Path

import gmpy2


def best_us(bits: int, exp_bits: int, count: int, repeat: int) -> float:
    rng = random.Random(bits)
    n = gmpy2.mpz(rng.getrandbits(bits) | (1 << (bits - 1)) | 1)
    bases = [gmpy2.mpz(rng.getrandbits(bits - 1)) for _ in range(count)]
    exps = [gmpy2.mpz(rng.getrandbits(exp_bits)) for _ in range(count)]
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        for b, e in zip(bases, exps):
            gmpy2.powmod(b, e, n)
        best = min(best, (time.perf_counter() - t) / count)
    return round(best * 1e6, 1)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=400)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--json", help="append this build's figures to this JSON file")
    a = ap.parse_args(argv)
    res = {"gmpy2": gmpy2.version(), "gmp": gmpy2.mp_version(),
           "python": platform.python_version(), "machine": platform.machine(),
           "powmod_4096_448_us": best_us(4096, 448, a.count, a.repeat),
           "powmod_2048_448_us": best_us(2048, 448, a.count, a.repeat)}
    print(json.dumps(res))
    if a.json:
        out = Path(a.json)
        runs = json.loads(out.read_text()) if out.exists() else []
        runs.append(res)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(runs, indent=2) + "\n")
    return res


if __name__ == "__main__":
    main()
