"""``fedcredit bank ...``: a bank's commands against a running holder (mutual TLS).

    fedcredit bank align --holder ADDR --tls-dir T --csv BANK.csv --id-column uscc --out A.csv
    fedcredit bank train --holder ADDR --tls-dir T --csv BANK.csv --id-column uscc \\
        --label-column label --model-out model.json
    fedcredit bank score --holder ADDR --tls-dir T --model model.json --csv NEW.csv \\
        --id-column uscc --out scores.csv

``train`` and ``score`` take ``--holder`` once per holder for a model of several (the order of
training is the order of scoring).

The bank's table never leaves this process: alignment is ECDH-PSI, training sends only
encrypted gradients, scoring sends the ids to score. ``T`` holds ``ca.pem`` and this bank's
client certificate (``bank.pem``/``bank.key``, or ``<NAME>.pem``/``.key`` with
``--bank-name NAME``). In notebooks use :func:`fedcredit.connect` and the estimators directly.
"""
from __future__ import annotations

import time
from pathlib import Path

from ..atomic import write_with


def register(sub) -> None:
    p = sub.add_parser("bank", help="align, train and score against a running holder")
    bs = p.add_subparsers(dest="bank_command", required=True)

    s = bs.add_parser("align", help="PSI: which of the bank's enterprises the holder serves")
    _common(s)
    s.add_argument("--out", required=True, help="CSV of the bank's rows the holder serves")
    s.set_defaults(func=_align)

    s = bs.add_parser("train", help="train SecureBoost with the holder; save the bank's model")
    _common(s)
    s.add_argument("--label-column", required=True)
    s.add_argument("--model-out", required=True)
    s.add_argument("--trees", type=int, default=20)
    s.add_argument("--depth", type=int, default=3)
    s.add_argument("--learning-rate", type=float, default=0.3)
    s.add_argument("--bins", type=int, default=32)
    s.add_argument("--min-child-samples", type=int, default=20)
    s.add_argument("--key-bits", type=int, default=2048)
    s.add_argument("--insecure-key", action="store_true",
                   help="allow keys below 2048 bits (tests only; the holder must allow it too)")
    s.add_argument("--workers", type=int, default=None, help="crypto worker processes")
    s.add_argument("--random-state", type=int, default=0)
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument("--objective", choices=("binary", "regression"), default="binary",
                   help="binary: probability of default (the label is 0/1); regression: an "
                        "amount such as a credit line (SecureBoostRegressor, squared error)")
    s.add_argument("--weight-column", help="a column of row weights (>= 0), not a feature")
    s.add_argument("--class-weight", help='"balanced", or label:weight pairs such as 0:1,1:10')
    s.add_argument("--monotone", action="append", default=[], metavar="FEATURE=+1|-1",
                   help="the score may only rise (+1) or fall (-1) with FEATURE (a bank "
                        "column, or holder:NAME as the holder publishes it); repeatable")
    s.add_argument("--cv", type=int, default=0, metavar="K",
                   help="first cross-validate over K folds with one alignment (AUC and KS, "
                        "or R2, per fold), then train on every row")
    s.add_argument("--align", choices=("all", "any"), default="all",
                   help="several --holder: train on the enterprises every holder serves "
                        "(all), or on those at least one serves (any: a holder's features "
                        "missing where it has none)")
    s.set_defaults(func=_train)

    s = bs.add_parser("score", help="score enterprises with a saved model and the holder")
    _common(s)
    s.add_argument("--model", required=True, help="model file written by `bank train` (or "
                                                  "any classifier's save())")
    s.add_argument("--out", required=True, help="CSV: id, score (probability of default), "
                                                "grade, holder_covered, reasons")
    s.add_argument("--uncovered", choices=("score", "refuse"), default="score",
                   help="an enterprise the holder has no data or consent for: score it with "
                        "the holder's features missing (flagged holder_covered=false), or "
                        "leave its score empty")
    s.add_argument("--reasons", type=int, default=3, metavar="K",
                   help="also write reason_1..K (and reason_i_contribution): the features "
                        "pushing each score most towards default (0: none)")
    s.set_defaults(func=_score)

    # in their own modules (they reuse _common and _connect)
    from . import bank_lifecycle_cmds, bank_loans_cmds, bank_serve_cmds

    bank_loans_cmds.register(bs)
    bank_serve_cmds.register(bs)
    bank_lifecycle_cmds.register(bs)


def _common(s) -> None:
    s.add_argument("--holder", required=True, action="append",
                   help="holder address host:port (bank train and score: repeat for a model "
                        "of several holders, in the same order for both)")
    s.add_argument("--tls-dir", required=True, help="ca.pem and this bank's certificate")
    s.add_argument("--bank-name", help="pick <NAME>.pem/.key in --tls-dir (default bank.pem)")
    s.add_argument("--csv", required=True, help="the bank's table")
    s.add_argument("--id-column", default="uscc")
    s.add_argument("--purpose", default="credit", help="purpose of use presented to the holder")
    s.add_argument("--no-uscc-check", action="store_true",
                   help="ids are not unified social credit codes (e.g. row ids)")
    s.add_argument("--timeout", type=float, default=3600.0, help="seconds per holder call")


def _table(a):
    from ..datasets import load_csv_table

    return load_csv_table(a.csv, a.id_column, uscc=not a.no_uscc_check)


def _connect(a):
    """The one holder's channel (commands that take one ``--holder``)."""
    from ..errors import InvalidInput

    addresses = _addresses(a)
    if len(addresses) != 1:
        command = getattr(a, "bank_command", "") or "this command"
        raise InvalidInput(f"bank {command} takes one --holder, got {len(addresses)}")
    return _connect_all(a)[0]


def _addresses(a) -> list[str]:
    return [a.holder] if isinstance(a.holder, str) else list(a.holder)


def _connect_all(a) -> list:
    """A channel per ``--holder``, in the order given (closed again if one fails)."""
    from ..transport import connect

    channels: list = []
    try:
        for address in _addresses(a):
            channels.append(connect(address, tls_dir=a.tls_dir, bank_name=a.bank_name,
                                    purpose=a.purpose, timeout=a.timeout))
    except BaseException:
        for ch in channels:
            ch.close()
        raise
    return channels


def _atomic_csv(df, path, index: bool) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_with(path, lambda tmp: df.to_csv(tmp, index=index))


def _align(a) -> int:
    import numpy as np

    from ..protocol import BankSession, align

    bank = _table(a)
    channel = _connect(a)
    try:
        session = BankSession(channel, "align", purpose=a.purpose)
        try:
            t0 = time.perf_counter()
            al = align(session, bank.index.tolist())
            seconds = time.perf_counter() - t0
        finally:
            session.close()
    finally:
        channel.close()
    _atomic_csv(bank.iloc[np.sort(al.bank_positions)], a.out, index=True)  # the file's order
    rate = len(bank) / seconds if seconds > 0 else float("inf")
    print(f"aligned {len(al)} of {len(bank)} enterprises with holder "
          f"{session.holder_name!r} (it offered {al.holder_offered} consented enterprises) "
          f"in {seconds:.1f} s ({rate:,.0f} ids/s); wrote {a.out}")
    return 0


def _train(a) -> int:
    from ..errors import InvalidInput
    from ..models import SecureBoostClassifier, SecureBoostRegressor
    from ..models.holders import holder_kwargs

    bank = _table(a)
    if a.label_column not in bank.columns:
        raise InvalidInput(f"{a.csv}: no label column {a.label_column!r}")
    y = bank.pop(a.label_column)
    weights = None
    if a.weight_column:
        if a.weight_column not in bank.columns:
            raise InvalidInput(f"{a.csv}: no weight column {a.weight_column!r}")
        weights = bank.pop(a.weight_column).to_numpy()
    regression = a.objective == "regression"
    if regression and a.class_weight:
        raise InvalidInput("--class-weight is for --objective binary")
    kw = dict(n_estimators=a.trees, max_depth=a.depth, learning_rate=a.learning_rate,
              max_bin=a.bins, min_child_samples=a.min_child_samples, key_bits=a.key_bits,
              insecure_key=a.insecure_key, n_jobs=a.workers, random_state=a.random_state,
              verbose=not a.quiet, monotone_constraints=_monotone(a.monotone) or None)
    model = SecureBoostRegressor(**kw) if regression else SecureBoostClassifier(
        **kw, class_weight=_class_weight(a.class_weight))
    channels = _connect_all(a)
    try:
        if a.cv:
            if len(channels) > 1:
                raise InvalidInput("--cv takes one --holder (cross-validation of a model of "
                                   "several holders is not built yet)")
            _cross_validate(model, bank, y, channels[0], a.cv, weights)
        model.fit(bank, y, **holder_kwargs(channels), sample_weight=weights,
                  align=a.align if len(channels) > 1 else "all")
    finally:
        for ch in channels:
            ch.close()
    out = Path(a.model_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(out)
    top = model.feature_importance("gain").head(5)
    who = f"holder {model.holder_name_!r}" if len(channels) == 1 else \
        "holders " + ", ".join(repr(h.name) for h in model.holders_)
    print(f"trained {len(model.trees_)} trees on {model.n_aligned_} aligned enterprises with "
          f"{who} in {model.fit_seconds_:.1f} s; model "
          f"{model.model_id_} saved to {out}")
    print("top features by gain: " + ", ".join(f"{k} ({v:.1f})" for k, v in top.items()))
    return 0


def _monotone(items: list[str]) -> dict:
    from ..errors import InvalidInput

    out = {}
    for item in items:
        name, sep, sign = item.rpartition("=")
        if not sep or not name or sign not in ("+1", "1", "-1"):
            raise InvalidInput(f"--monotone {item!r}: expected FEATURE=+1 or FEATURE=-1")
        out[name] = -1 if sign == "-1" else 1
    return out


def _class_weight(text: str | None):
    from ..errors import InvalidInput

    if not text or text == "balanced":
        return text or None
    try:
        return {int(k): float(v) for k, v in (p.split(":") for p in text.split(","))}
    except ValueError:
        raise InvalidInput(f'--class-weight {text!r}: "balanced" or pairs such as '
                           "0:1,1:10") from None


def _cross_validate(model, bank, y, channel, k: int, weights) -> None:
    import numpy as np

    from ..model_selection import cross_validate

    res = cross_validate(model, bank, y, holder=channel, cv=k, sample_weight=weights)
    tests = {n[5:]: v for n, v in res.items() if n.startswith("test_")}
    for fold in range(k):
        print(f"fold {fold + 1}/{k}: " + ", ".join(f"{n} {v[fold]:.4f}" for n, v in tests.items()))
    print(f"cross-validation over {k} folds (one alignment of {res['n_aligned']} enterprises): "
          + ", ".join(f"{n} {np.mean(v):.4f} ± {np.std(v):.4f}" for n, v in tests.items()))


def _score(a) -> int:
    import pandas as pd

    from ..decision import load_model
    from ..errors import InvalidInput
    from ..metrics.grades import grade
    from ..models.holders import holder_kwargs

    if a.reasons < 0:
        raise InvalidInput(f"--reasons must be >= 0, got {a.reasons}")
    model = load_model(a.model)
    model.set_params(uncovered=a.uncovered)
    X = _table(a)
    channels = _connect_all(a)
    try:
        t0 = time.perf_counter()
        p, covered, reasons = _scores_and_reasons(model, X, holder_kwargs(channels), a.reasons)
        seconds = time.perf_counter() - t0
    finally:
        for ch in channels:
            ch.close()
    out = pd.DataFrame({a.id_column: X.index, "score": p, "grade": grade(p),
                        "holder_covered": covered})
    if reasons is not None:
        out = pd.concat([out, reasons.reset_index(drop=True)], axis=1)
    _atomic_csv(out, a.out, index=False)
    who = "the holder" if len(channels) == 1 else "every holder"
    print(f"scored {len(out)} enterprises in {seconds:.1f} s ({int((~covered).sum())} not "
          f"covered by {who}: no data or no current consent); wrote {a.out}")
    return 0


def _scores_and_reasons(model, X, holders: dict, k: int):
    """Probabilities of default, the holder's coverage and, from a model that can explain,
    its top ``k`` reasons per enterprise (one holder request for all: the score is the
    explanation's sum). No reasons where the model or the holder keeps each enterprise's
    path from the bank. ``holders``: ``{"holder": channel}`` or ``{"holders": [...]}``."""
    import sys

    import numpy as np

    from ..errors import PolicyViolation
    from ..models.explain import explained_probability, top_reasons

    if k and hasattr(model, "explain"):
        if getattr(model, "scoring", None) == "private":
            print("note: no reason codes: the model scores privately (scoring='private'), "
                  "which keeps each enterprise's path from the bank", file=sys.stderr)
        else:
            try:
                explanation = model.explain(X, **holders)
            except PolicyViolation as e:
                print(f"note: no reason codes: {e}", file=sys.stderr)
            else:
                return (*explained_probability(model, explanation),
                        top_reasons(explanation, k))
    p, covered = model.predict_proba(X, **holders, return_coverage=True)
    return p[:, 1], np.asarray(covered, dtype=bool), None
