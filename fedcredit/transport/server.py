"""The holder's gRPC server: a thin servicer around :class:`PassiveParty`.

Decode frames, call the protocol, encode frames, map known errors to gRPC status codes (the
error's class name travels in trailing metadata so the client re-raises the same type).
Mutual TLS is the default: the bank's identity is its client certificate's common name.
Plaintext only with ``insecure=True`` (tests), where the identity comes from metadata.

A hostile bank must not be able to starve the holder, so every ``Exchange`` call passes
these gates, cheapest first, before the protocol core sees it:

1. **Identity.** The certificate name is read and a bank outside
   ``policy.allowed_banks`` is refused (``PERMISSION_DENIED``) before a byte of its
   stream is read.
2. **Admission.** At most ``max_workers`` ``Exchange`` calls run at once, and at most
   ``max_calls_per_bank`` of them for one bank; beyond that a call is refused at once
   (``RESOURCE_EXHAUSTED``), again without reading its stream.
3. **Deadlines.** The stream is read on a small helper thread into a bounded queue (a few
   frames: gRPC flow control still holds a fast sender back) and the call's worker waits
   on that queue with a timeout: the first frame must come within
   ``first_message_seconds``, and inside a stream the holder waits at most
   ``idle_stream_seconds`` for the next frame (the clock runs only while the holder is
   waiting, not while it computes). A silent stream ends with ``DEADLINE_EXCEEDED`` and
   frees its worker; the helper thread ends with the call, since gRPC ends the request
   iterator of a finished call. The per-frame cost is one queue hand-off.

**Threads.** The server's pool has ``max_workers`` threads for ``Exchange`` plus
:data:`RESERVED_THREADS` more that ``Exchange`` can never take (admission refuses beyond
``max_workers``), so the health service and refusals always find a thread, however many
calls are held. Health ``Watch`` streams hold no thread (they are non-blocking) and are
capped at :data:`MAX_HEALTH_WATCHES`, so they cannot fill gRPC's concurrent-call limit.

**Auditing.** Refusals that happen before the core has a decoded first message (the
gates above, garbage or truncated first frames, a wrong protocol version, an empty
envelope or stream, an oversized first message) are written to ``passive.auditor`` as
``refused:<reason>`` with the certificate name, no session, 0 enterprises and the error's
type and message (never payload bytes). They are rate limited per certificate name and
reason: at most one record per ``refusal_audit_seconds``; the refusals in between are
counted and carried by the next record of the same key (``"... (+N more in 1 s)"``), or
written when any later refusal finds the window over, or at :meth:`HolderServer.stop`.
Answered Pings go through the same limiter as ``ping`` records. Refusals after the first
message are the core's to audit (its ``audit_refusals`` middleware).
"""
from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from ..errors import (
    FedCreditError,
    InvalidInput,
    PolicyViolation,
    ProtocolError,
    Unauthenticated,
)
from ..protocol import messages as m
from ..protocol.channel import Caller
from . import serde, tls
from .generated import fedcredit_pb2_grpc as pbg
from .guard import (
    DEFAULT_REFUSAL_AUDIT_SECONDS,
    Admission,
    FramePump,
    RefusalAudit,
    Refused,
    first_message_reason,
    wire_name,
)
from .pin import IssuerPin

log = logging.getLogger("fedcredit.holder")

INSECURE_BANK_METADATA = "fedcredit-bank"
ERROR_METADATA = "fedcredit-error"
SERVICE_NAME = "fedcredit.v1.PassiveParty"

#: pool threads ``Exchange`` can never take: health checks and refusals always find one
RESERVED_THREADS = 4
#: concurrent health ``Watch`` streams (they hold no thread, but count as open calls)
MAX_HEALTH_WATCHES = 16
#: frames read ahead of the protocol per call (each at most :data:`serde.FRAME_BYTES`)

DEFAULT_FIRST_MESSAGE_SECONDS = 30.0
DEFAULT_IDLE_STREAM_SECONDS = 60.0


def server_options(max_frame: int = serde.FRAME_BYTES) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", max_frame + (64 << 10)),
        ("grpc.max_send_message_length", max_frame + (64 << 10)),
        ("grpc.keepalive_time_ms", 30_000),  # detect a vanished bank
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
    ]


class _Servicer(pbg.PassivePartyServicer):
    def __init__(self, passive, insecure: bool, admission: Admission, audit: RefusalAudit,
                 first_seconds: float, idle_seconds: float):
        self.passive = passive
        self.insecure = insecure
        self.admission = admission
        self.audit = audit
        self.first_seconds, self.idle_seconds = first_seconds, idle_seconds
        self.pumps: set[FramePump] = set()  # open readers, for tests and diagnostics
        self.issuer_pin: IssuerPin | None = None  # set by the server for mTLS

    def _caller(self, context) -> Caller:
        if self.insecure:
            md = dict(context.invocation_metadata())
            return Caller(bank=md.get(INSECURE_BANK_METADATA, "anonymous"))
        return Caller(bank=tls.peer_identity(context, self.issuer_pin))

    def _identify(self, context) -> Caller:
        try:
            return self._caller(context)
        except Unauthenticated as e:
            raise Refused("unauthenticated", e) from None

    def _admit(self, caller: Caller) -> Callable[[], None]:
        """Policy and admission: nothing of the stream is read."""
        policy = getattr(self.passive, "policy", None)
        allowed = getattr(policy, "allowed_banks", None)
        if allowed is not None and caller.bank not in allowed:
            raise Refused("unlisted_bank", PolicyViolation(
                f"bank {caller.bank!r} is not served by this holder"))
        return self.admission.enter(caller.bank)

    def Exchange(self, request_iterator, context):
        bank = ""
        pump: FramePump | None = None
        leave: Callable[[], None] | None = None

        def finish() -> None:
            if pump is not None:
                pump.close()
                self.pumps.discard(pump)
            if leave is not None:
                leave()

        try:
            caller = self._identify(context)
            bank = caller.bank
            leave = self._admit(caller)
            if not context.add_callback(finish):  # the call already ended
                return
            pump = FramePump(request_iterator, self.first_seconds, self.idle_seconds)
            self.pumps.add(pump)
            messages = serde.from_frames(pump.frames())
            try:
                first = next(messages)
            except StopIteration:
                raise Refused("empty_stream", ProtocolError("empty request")) from None
            except FedCreditError as e:
                raise Refused(first_message_reason(e, pump), e) from None
            requests: Iterator[Any] = itertools.chain((first,), messages)
            yield from serde.to_frames(self.passive.handle(caller, requests))
            if type(first) is m.Ping:
                self.audit.note(bank, "ping", "answered")
        except Refused as r:
            err = r.error
            self.audit.note(bank, f"refused:{r.reason}",
                            f"{type(err).__name__}: {str(err)[:200]}")
            self._abort(context, err)
        except FedCreditError as e:
            log.info("request refused: %s: %s", type(e).__name__, e)
            self._abort(context, e)
        except grpc.RpcError:
            raise
        except Exception:  # never crash the server; never echo internals to the bank
            if context.is_active():
                log.exception("internal error while serving a request")
                context.abort(grpc.StatusCode.INTERNAL, "internal error in the holder "
                              "(details are in the holder's log)")
        finally:
            finish()

    @staticmethod
    def _abort(context, e: FedCreditError) -> None:
        context.set_trailing_metadata(((ERROR_METADATA, wire_name(e)),))
        context.abort(getattr(grpc.StatusCode, e.grpc_status), str(e))


class _Health(health.HealthServicer):
    """The standard health service with a cap on concurrent ``Watch`` streams."""

    def __init__(self, max_watches: int = MAX_HEALTH_WATCHES):
        super().__init__()
        self._max_watches = max_watches
        self._watches = 0
        self._watch_lock = threading.Lock()

    def _unwatch(self) -> None:
        with self._watch_lock:
            self._watches -= 1

    def Watch(self, request, context, send_response_callback=None):
        with self._watch_lock:
            full = self._watches >= self._max_watches
            if not full:
                self._watches += 1
        if full:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"the holder serves at most {self._max_watches} health watches")
        if not context.add_callback(self._unwatch):
            self._unwatch()
        return super().Watch(request, context, send_response_callback)


def _positive(name: str, value: float) -> float:
    if not value > 0:
        raise InvalidInput(f"{name} must be positive, got {value!r}")
    return float(value)


class HolderServer:
    """Serve a :class:`PassiveParty` over gRPC.

    Parameters
    ----------
    passive : PassiveParty
    address : str
        ``host:port``; port 0 picks a free port (see :attr:`port`).
    tls_dir : path, optional
        Directory with ``ca.pem``, ``holder.pem`` and ``holder.key``
        (:func:`fedcredit.holder.devca.make_dev_certs` makes development ones).
    insecure : bool
        Plaintext gRPC, for tests only.
    max_workers : int
        Concurrent ``Exchange`` calls served (the pool has :data:`RESERVED_THREADS` more
        for health checks and refusals).
    max_calls_per_bank : int, optional
        Concurrent ``Exchange`` calls of one bank; default ``max(1, max_workers // 2)``.
    first_message_seconds : float
        How long a new call may stay silent before its first frame.
    idle_stream_seconds : float
        How long the holder waits for the next frame inside a stream; must exceed the
        bank's longest pause between frames (encrypting one gradient chunk).
    refusal_audit_seconds : float
        At most one audit record per certificate name and refusal reason in this window;
        the others are counted into the next record.
    """

    def __init__(self, passive, address: str = "127.0.0.1:50051", tls_dir=None,
                 insecure: bool = False, max_workers: int = 16, *,
                 max_calls_per_bank: int | None = None,
                 first_message_seconds: float = DEFAULT_FIRST_MESSAGE_SECONDS,
                 idle_stream_seconds: float = DEFAULT_IDLE_STREAM_SECONDS,
                 refusal_audit_seconds: float = DEFAULT_REFUSAL_AUDIT_SECONDS):
        if int(max_workers) < 1:
            raise InvalidInput(f"max_workers must be at least 1, got {max_workers!r}")
        max_workers = int(max_workers)
        per_bank = max(1, max_workers // 2) if max_calls_per_bank is None \
            else int(max_calls_per_bank)
        if per_bank < 1:
            raise InvalidInput(f"max_calls_per_bank must be at least 1, got {per_bank}")
        self.passive = passive
        self.max_workers = max_workers
        self.max_calls_per_bank = min(per_bank, max_workers)
        self.first_message_seconds = _positive("first_message_seconds", first_message_seconds)
        self.idle_stream_seconds = _positive("idle_stream_seconds", idle_stream_seconds)
        self.refusals = RefusalAudit(passive.auditor, _positive(
            "refusal_audit_seconds", refusal_audit_seconds))
        self.admission = Admission(max_workers, self.max_calls_per_bank)
        threads = max_workers + RESERVED_THREADS
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="fedcredit-rpc"),
            options=server_options(),
            maximum_concurrent_rpcs=threads * 4 + MAX_HEALTH_WATCHES)
        self.servicer = _Servicer(passive, insecure, self.admission, self.refusals,
                                  self.first_message_seconds, self.idle_stream_seconds)
        pbg.add_PassivePartyServicer_to_server(self.servicer, self.server)
        self.health = _Health()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        if insecure:
            self.port = self.server.add_insecure_port(address)
        else:
            if tls_dir is None:
                raise FedCreditError("a TLS directory is required unless insecure=True")
            self.port = self.server.add_secure_port(address, tls.server_credentials(tls_dir))
            self.servicer.issuer_pin = IssuerPin(Path(tls_dir) / "ca.pem")
        if not self.port:
            raise FedCreditError(f"could not listen on {address}")
        host = address.rsplit(":", 1)[0]
        self.address = f"{host}:{self.port}"
        self._stopped = threading.Event()

    def start(self) -> HolderServer:
        self.server.start()
        for name in ("", SERVICE_NAME):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        return self

    def set_serving(self, serving: bool) -> None:
        """Health as the holder's duties allow (NOT_SERVING while its audit log is down)."""
        status = (health_pb2.HealthCheckResponse.SERVING if serving and not self._stopped.is_set()
                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        for name in ("", SERVICE_NAME):
            self.health.set(name, status)

    def stop(self, grace: float | None = 5.0) -> None:
        """Refuse new calls, let running ones finish for ``grace`` seconds."""
        for name in ("", SERVICE_NAME):
            self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        self.server.stop(grace).wait()
        self.refusals.flush()
        self._stopped.set()

    def wait(self) -> None:
        self.server.wait_for_termination()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop(0)
