"""docs/PRIVACY.md cannot drift from the code: every message type has a row, every protocol a
section, every knob and constant it names exists with the value it states. No training: the
checks read the note, the registry, HolderPolicy's fields and the estimators' parameters."""
from __future__ import annotations

import ast
import math
import re
from dataclasses import MISSING, fields
from pathlib import Path

import pytest

from fedcredit.models import HeteroLogisticRegression, Scorecard, SecureBoostClassifier
from fedcredit.models.secureboost import estimator as sb_estimator
from fedcredit.models.secureboost.grower import TreeGrower
from fedcredit.protocol import HolderPolicy
from fedcredit.protocol.alignment import math as alignment_math
from fedcredit.protocol.logistic import holder as lr_holder
from fedcredit.protocol.logistic import math as lr_math
from fedcredit.protocol.lr_chain import holder as chain_holder
from fedcredit.protocol.lr_chain import math as chain_math
from fedcredit.protocol.private_scoring import math as ps_math
from fedcredit.protocol.registry import MESSAGE_TYPES
from fedcredit.protocol.secureboost import math as sb_math

DOC = Path(__file__).resolve().parent.parent / "docs" / "PRIVACY.md"

#: estimator parameters the note may name as knobs, and the estimator whose default counts
ESTIMATOR_KNOBS = {
    "bank_only_trees": SecureBoostClassifier,
    "scoring": SecureBoostClassifier,
    "min_child_samples": SecureBoostClassifier,
    "frac_bits": SecureBoostClassifier,
    "goss_top_rate": SecureBoostClassifier,
    "warm_start": HeteroLogisticRegression,
    "blind_woe": Scorecard,
}
#: switches in code (not knobs) the note may name: (owner, attribute, value it must have)
CODE_SWITCHES = {
    "hide_small_siblings": (TreeGrower, "hide_small_siblings", True),
}
#: constants the note names as `NAME` = value
CONSTANTS = {
    "MAX_FRAC_BITS": sb_math.MAX_FRAC_BITS,
    "GRADIENT_SLACK": lr_math.GRADIENT_SLACK,
    "MASK_BITS": lr_math.MASK_BITS,
    "SCORE_RESOLUTION": lr_math.SCORE_RESOLUTION,
    "REVEAL_STANDARD_COEFFICIENTS": lr_holder.REVEAL_STANDARD_COEFFICIENTS,
    "PRIVATE_ROWS": sb_estimator.PRIVATE_ROWS,
    "FRAC_BITS": ps_math.FRAC_BITS,
    "ORDER_BY_ID": alignment_math.ORDER_BY_ID,
    "SEAL_RELAYS": chain_holder.SEAL_RELAYS,
    "RERANDOMIZE_RESIDUALS": chain_holder.RERANDOMIZE_RESIDUALS,
    "CHAIN_BITS": chain_math.CHAIN_BITS,
}
SECTIONS = ("alignment", "secureboost", "logistic regression", "woe", "scorecard", "scoring",
            "fate", "secretflow")

KNOB = re.compile(r"`(\w+)` \(default (`[^`]*`|[^),;:]+)")
CONSTANT = re.compile(r"`([A-Z][A-Z0-9_]+)` = ([0-9.^*+\-]+|True|False)")
TICKED = re.compile(r"`([^`]+)`")


@pytest.fixture(scope="module")
def text() -> str:
    return DOC.read_text(encoding="utf-8")


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """(header cells, body rows) of every Markdown table in the note."""
    out, lines = [], text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].lstrip().startswith("|") and i + 1 < len(lines) \
                and re.fullmatch(r"\s*\|[\s|:-]+\|\s*", lines[i + 1]):
            header, body = _cells(lines[i]), []
            i += 2
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                body.append(_cells(lines[i]))
                i += 1
            out.append((header, body))
        else:
            i += 1
    return out


def first_cells(text: str) -> set[str]:
    return {row[0].strip("`").strip() for _, body in tables(text) for row in body if row}


def policy_defaults() -> dict:
    out = {}
    for f in fields(HolderPolicy):
        out[f.name] = f.default if f.default is not MISSING else f.default_factory()
    return out


def parse_value(raw: str):
    """A value as the note writes it: a Python literal, or a power such as 2^-10."""
    raw = raw.strip().strip("`").strip()
    try:
        if "^" in raw:
            base, exp = raw.split("^")
            return float(base) ** float(exp)
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError) as e:
        raise AssertionError(f"cannot read the value {raw!r} in docs/PRIVACY.md") from e


def same(a, b) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None \
            or isinstance(a, str) or isinstance(b, str):
        return a == b
    return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)


def test_the_note_names_no_path_outside_the_repository(text):
    assert "../" not in text and "/tmp" not in text and "shared/" not in text


def test_every_message_type_has_a_row(text):
    rows = first_cells(text)
    missing = [t.__name__ for t in MESSAGE_TYPES if t.__name__ not in rows]
    assert not missing, f"docs/PRIVACY.md has no table row for {missing}"


def test_every_message_row_names_a_real_message(text):
    """A row in a message table (first column "message") names a type of the registry, so a
    renamed message cannot keep a stale row."""
    names = {t.__name__ for t in MESSAGE_TYPES}
    stale = [row[0] for header, body in tables(text) if header and header[0] == "message"
             for row in body if row[0].strip("`") not in names]
    assert not stale, f"rows for unknown message types: {stale}"


def test_message_tables_have_the_budget_columns(text):
    for header, _ in tables(text):
        if header and header[0] == "message":
            joined = " | ".join(header).lower()
            for col in ("direction", "receiver gets", "infer", "knob", "accepted"):
                assert col in joined, f"a message table lacks the {col!r} column: {header}"


def test_the_sections_exist(text):
    headings = [ln.lstrip("#").strip().lower() for ln in text.splitlines() if ln.startswith("#")]
    missing = [s for s in SECTIONS if not any(s in h for h in headings)]
    assert not missing, f"docs/PRIVACY.md lacks sections for {missing}"


def test_every_stated_default_is_the_codes(text):
    """Anywhere in the note, `knob` (default value) names a HolderPolicy field or a listed
    estimator parameter, with the default the code has."""
    policy = policy_defaults()
    params = {cls: cls().get_params() for cls in set(ESTIMATOR_KNOBS.values())}
    found = KNOB.findall(text)
    assert found, "the note states no knob defaults"
    wrong = []
    for name, raw in found:
        stated = parse_value(raw)
        if name in policy:
            actual = policy[name]
        elif name in ESTIMATOR_KNOBS:
            actual = params[ESTIMATOR_KNOBS[name]][name]
        else:
            wrong.append(f"`{name}` is neither a HolderPolicy field nor a listed estimator knob")
            continue
        if not same(stated, actual):
            wrong.append(f"`{name}`: the note says {stated!r}, the code {actual!r}")
    assert not wrong, "\n".join(wrong)


def test_knob_columns_name_only_real_knobs(text):
    """Every snake_case identifier in a knob or switch column is a HolderPolicy field, a
    parameter of an estimator, or a listed switch in code; every UPPER_CASE one a listed
    constant."""
    known = set(policy_defaults()) | set(CODE_SWITCHES)
    for cls in (SecureBoostClassifier, HeteroLogisticRegression, Scorecard):
        known |= set(cls().get_params())
    bad = []
    for header, body in tables(text):
        cols = [k for k, h in enumerate(header) if "knob" in h.lower() or "switch" in h.lower()]
        for row in body:
            for k in cols:
                for tok in TICKED.findall(row[k] if k < len(row) else ""):
                    if re.fullmatch(r"[a-z_][a-z0-9_]*", tok) and tok not in known:
                        bad.append(tok)
                    if re.fullmatch(r"[A-Z][A-Z0-9_]+", tok) and tok not in CONSTANTS:
                        bad.append(tok)
    assert not bad, f"unknown knobs or constants in knob columns: {sorted(set(bad))}"


def test_listed_knobs_exist():
    for name, cls in ESTIMATOR_KNOBS.items():
        assert name in cls().get_params(), f"{cls.__name__} has no parameter {name!r}"
    for owner, attr, value in CODE_SWITCHES.values():
        assert getattr(owner, attr) is value, f"{owner.__name__}.{attr} is not {value!r}"


def test_every_stated_constant_is_the_codes(text):
    found = CONSTANT.findall(text)
    assert found, "the note states no constants"
    wrong = [f"`{n}`: the note says {v}, the code {CONSTANTS.get(n)!r}" for n, v in found
             if n not in CONSTANTS or not same(parse_value(v), CONSTANTS[n])]
    assert not wrong, "\n".join(wrong)


def test_attack_tests_named_exist(text):
    root = DOC.parent.parent
    named = set(re.findall(r"tests/attacks/\w+\.py", text))
    assert named, "the note names no attack test"
    missing = [p for p in sorted(named) if not (root / p).is_file()]
    assert not missing, f"attack tests named but absent: {missing}"
