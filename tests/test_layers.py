"""Imports point one way: crypto -> psi/binning -> protocol -> models -> transport -> holder -> cli.

Also: only ``crypto`` imports phe or gmpy2, and only ``transport`` imports grpc or protobuf.
"""
from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "fedcredit"

RANK = {"errors": 0, "atomic": 0, "crypto": 1, "psi": 2, "binning": 2, "datasets": 2, "metrics": 2,
        "plots": 3, "protocol": 4, "models": 5, "model_selection": 6, "transport": 6, "holder": 7, "decision": 7, "simulation": 8, "cli": 8}


def _layer(path: Path) -> str:
    rel = path.relative_to(PKG)
    return rel.parts[0].removesuffix(".py") if len(rel.parts) > 1 else rel.stem


def _imports(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's package
                base = path.relative_to(PKG).parts[:-1]
                up = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                mod = ".".join(("fedcredit",) + tuple(up) + ((node.module,) if node.module else ()))
            else:
                mod = node.module or ""
            yield mod, node.lineno
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, node.lineno


def test_layers_import_one_way():
    bad = []
    for path in PKG.rglob("*.py"):
        if "generated" in path.parts or path.name == "__init__.py" and path.parent == PKG:
            continue
        me = _layer(path)
        for mod, line in _imports(path):
            parts = mod.split(".")
            if parts[0] != "fedcredit" or len(parts) < 2 or parts[1] not in RANK:
                continue
            other = parts[1]
            if RANK[other] > RANK.get(me, 99):
                bad.append(f"{path.relative_to(PKG)}:{line} ({me}) imports {mod} ({other})")
    assert not bad, "\n".join(bad)


def test_only_crypto_touches_bignum_libraries_and_only_transport_grpc():
    bad = []
    for path in PKG.rglob("*.py"):
        me = _layer(path)
        for mod, line in _imports(path):
            top = mod.split(".")[0]
            if top in ("phe", "gmpy2") and me != "crypto":
                bad.append(f"{path.relative_to(PKG)}:{line} imports {mod}")
            if top in ("grpc", "grpc_health", "google") and me not in ("transport",):
                bad.append(f"{path.relative_to(PKG)}:{line} imports {mod}")
    assert not bad, "\n".join(bad)


def _defined_private_names(files) -> set[str]:
    out: set[str] = set()
    for f in files:
        for n in ast.walk(ast.parse(f.read_text())):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                out.add(n.name)
            elif isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store):
                out.add(n.attr)
            elif isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                out.add(n.id)
    return {x for x in out if x.startswith("_") and not x.startswith("__") and len(x) > 1}


def test_no_private_crypto_name_is_used_outside_crypto():
    """Protocol code uses fedcredit.crypto the way a recipe uses hazmat: public API only."""
    crypto = PKG / "crypto"
    inside = [f for f in PKG.rglob("*.py") if crypto in f.parents]
    outside = [f for f in PKG.rglob("*.py") if crypto not in f.parents]
    private = _defined_private_names(inside) - _defined_private_names(outside)
    private |= {f.stem for f in inside if f.stem.startswith("_") and f.stem != "__init__"}
    bad = []
    for f in outside:
        for n in ast.walk(ast.parse(f.read_text())):
            if isinstance(n, ast.Attribute) and n.attr in private:
                bad.append(f"{f.relative_to(PKG)}:{n.lineno} uses .{n.attr}")
        for mod, line in _imports(f):
            if mod.startswith("fedcredit.crypto") and any(
                    p.startswith("_") for p in mod.split(".")):
                bad.append(f"{f.relative_to(PKG)}:{line} imports {mod}")
    for f in outside:
        for n in ast.walk(ast.parse(f.read_text())):
            if isinstance(n, ast.ImportFrom) and n.module and "crypto" in n.module:
                bad += [f"{f.relative_to(PKG)}:{n.lineno} imports {a.name}"
                        for a in n.names if a.name in private]
    assert not bad, "\n".join(bad)


def test_every_protocol_package_has_the_same_modules():
    proto = PKG / "protocol"
    shapes = {d.name: sorted(p.stem for p in d.glob("*.py"))
              for d in proto.iterdir() if (d / "__init__.py").exists()}
    assert len(shapes) >= 4
    assert all(s == ["__init__", "bank", "holder", "math", "messages"] for s in shapes.values()), \
        shapes
