#!/usr/bin/env python
"""Side by side: fit times and time budgets of several ``benchmarks/secureboost.py`` runs.

    python benchmarks/compare_runs.py --out benchmarks/results/protocol_shape/summary \\
        before=benchmarks/results/protocol_shape/before_1.json after=...after_1.json ...

For before/after claims on a shared machine: alternate the runs (before, after, before,
after) and compare medians. Writes ``OUT.json`` and ``OUT.md``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="LABEL=PATH of a secureboost.py JSON")
    ap.add_argument("--out", required=True, help="output path without suffix")
    a = ap.parse_args(argv)
    by_label: dict[str, list[dict]] = {}
    for item in a.runs:
        label, sep, path = item.partition("=")
        if not sep:
            ap.error(f"{item!r} is not LABEL=PATH")
        by_label.setdefault(label, []).append(json.loads(Path(path).read_text()))
    summary: dict = {}
    for label, runs in by_label.items():
        for scheme in runs[0]["race"]:
            fits = [r["race"][scheme]["fedcredit"]["fit_seconds"] for r in runs]
            budget: dict[str, list[float]] = {}
            for r in runs:
                f = r["race"][scheme]["fedcredit"]
                for k, v in {**f["time_budget_bank"], **f["time_budget_holder"]}.items():
                    budget.setdefault(k, []).append(v)
            summary.setdefault(scheme, {})[label] = {
                "fit_seconds": fits, "fit_median": statistics.median(fits),
                "budget_median": {k: round(statistics.median(v), 3) for k, v in budget.items()}}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = ["# SecureBoost fit: " + " vs ".join(by_label), "",
             "| scheme | " + " | ".join(f"{lb} fit (s), runs" for lb in by_label) + " |",
             "| --- |" + " --- |" * len(by_label)]
    for scheme, per in summary.items():
        cells = [f"{per[lb]['fit_median']:.1f} ({', '.join(f'{x:.1f}' for x in per[lb]['fit_seconds'])})"
                 for lb in by_label]
        lines.append(f"| {scheme} | " + " | ".join(cells) + " |")
    lines += ["", "## Time budgets (medians, seconds)", ""]
    for scheme, per in summary.items():
        for lb in by_label:
            parts = ", ".join(f"{k} {v}" for k, v in per[lb]["budget_median"].items())
            lines.append(f"**{scheme} {lb}**: {parts}")
            lines.append("")
    out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
