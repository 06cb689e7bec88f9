"""``fedcredit bank serve``: the decision service in one process, until SIGTERM.

uvicorn serves the app (:mod:`fedcredit.decision.app`) and handles SIGTERM and SIGINT
gracefully: it stops accepting connections, lets running requests finish, then returns; the
holder channel and the decision log are closed after it. The channel is opened once; gRPC
reconnects by itself, so a holder that restarts costs the requests made while it was away
(503), not a restart of this service.
"""
from __future__ import annotations

import logging
import signal

from ..errors import InvalidInput

log = logging.getLogger("fedcredit.decision")


def split_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise InvalidInput(f"--listen {listen!r} must be HOST:PORT")
    return host.strip("[]"), int(port)


def run(model_path, holder: str | list[str], tls_dir, listen: str, *, bank_name=None,
        purpose: str = "credit", reasons: int = 3, max_batch: int = 1000,
        decision_log=None, timeout: float = 30.0, model_params: dict | None = None) -> int:
    import uvicorn

    from ..transport import connect
    from .app import create_app
    from .log import DecisionLog
    from .scorer import Scorer, load_model

    host, port = split_listen(listen)
    if not 1 <= max_batch <= 100_000:
        raise InvalidInput("--max-batch must lie in [1, 100000]")
    model = load_model(model_path)
    if model_params:
        unknown = sorted(set(model_params) - set(model.get_params()))
        if unknown:
            raise InvalidInput(f"a {type(model).__name__} has no {unknown[0]!r} setting")
        model.set_params(**model_params)
    addresses = [holder] if isinstance(holder, str) else list(holder)
    channels = [connect(h, tls_dir=tls_dir, bank_name=bank_name, purpose=purpose,
                        timeout=timeout, wait=None) for h in addresses]
    dlog = DecisionLog(decision_log)
    try:
        app = create_app(Scorer(model, channels[0] if len(channels) == 1 else channels,
                                reasons=reasons), dlog, max_batch=max_batch)
        config = uvicorn.Config(app, host=host, port=port, log_level="warning",
                                access_log=False, timeout_graceful_shutdown=10)
        log.info("decision service listening", extra={"fields": {
            "listen": listen, "model_id": getattr(model, "model_id_", ""), "holder": holder}})
        # uvicorn stops gracefully on SIGTERM/SIGINT, then re-raises the signal to the
        # handler it found: ours records it, so a graceful stop exits 0
        received: list[int] = []
        previous = {sig: signal.signal(sig, lambda s, _f: received.append(s))
                    for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            uvicorn.Server(config).run()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        log.info("decision service stopped", extra={"fields": {"signals": received}})
    finally:
        for channel in channels:
            channel.close()
        dlog.close()
    return 0
