"""``fedcredit bank serve``: the bank's decision service (HTTP JSON) in front of a model and
one long-lived mTLS channel to the holder."""
from __future__ import annotations


def register(bs) -> None:
    """Add ``bank serve`` to ``fedcredit bank``."""
    s = bs.add_parser(
        "serve", help="the decision service: POST /v1/score for the loan-origination system",
        description="Serves POST /v1/score (probability, points, grade, holder coverage, top "
                    "reasons), GET /v1/health, GET /v1/ready and the OpenAPI page /docs, with "
                    "one long-lived mutual-TLS channel to the holder. SIGTERM stops it after "
                    "running requests finish.")
    s.add_argument("--model", required=True, help="a model file written by `bank train` or "
                                                  "an estimator's save()")
    s.add_argument("--holder", required=True, action="append",
                   help="holder address host:port (repeat for a model of several holders, in "
                        "training order)")
    s.add_argument("--tls-dir", required=True, help="ca.pem and this bank's certificate")
    s.add_argument("--bank-name", help="use <NAME>.pem/.key from --tls-dir")
    s.add_argument("--purpose", default="credit")
    s.add_argument("--listen", default="127.0.0.1:8080", help="HOST:PORT to serve HTTP on")
    s.add_argument("--reasons", type=int, default=3, help="top reasons per enterprise (0: none)")
    s.add_argument("--max-batch", type=int, default=1000, help="enterprises per request")
    s.add_argument("--decision-log", help="append one JSON line per decision here")
    s.add_argument("--timeout", type=float, default=30.0, help="seconds per holder call")
    s.add_argument("--scoring", choices=("auto", "plain", "private"),
                   help="SecureBoost: override the model's scoring mode (private: Fed-EINI, "
                        "no reasons)")
    s.add_argument("--key-bits", type=int, help="SecureBoost private scoring: the key size")
    s.set_defaults(func=_serve)


def _serve(a) -> int:
    from ..decision.serve import run

    holder = a.holder[0] if len(a.holder) == 1 else a.holder
    return run(a.model, holder, a.tls_dir, a.listen, bank_name=a.bank_name,
               purpose=a.purpose, reasons=a.reasons, max_batch=a.max_batch,
               decision_log=a.decision_log, timeout=a.timeout,
               model_params={k: v for k, v in (("scoring", a.scoring), ("key_bits", a.key_bits))
                             if v is not None})
