"""The holder's gRPC server: a thin servicer around :class:`PassiveParty`.

Decode frames, call the protocol, encode frames, map known errors to gRPC status codes (the
error's class name travels in trailing metadata so the client re-raises the same type).
Mutual TLS is the default: the bank's identity is its client certificate's common name.
Plaintext only with ``insecure=True`` (tests), where the identity comes from metadata.
"""
from __future__ import annotations

import logging
import threading
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from ..errors import FedCreditError
from ..protocol.channel import Caller
from . import serde, tls
from .generated import fedcredit_pb2_grpc as pbg

log = logging.getLogger("fedcredit.holder")

INSECURE_BANK_METADATA = "fedcredit-bank"
ERROR_METADATA = "fedcredit-error"
SERVICE_NAME = "fedcredit.v1.PassiveParty"


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
    def __init__(self, passive, insecure: bool):
        self.passive = passive
        self.insecure = insecure

    def _caller(self, context) -> Caller:
        if self.insecure:
            md = dict(context.invocation_metadata())
            return Caller(bank=md.get(INSECURE_BANK_METADATA, "anonymous"))
        return Caller(bank=tls.peer_identity(context))

    def Exchange(self, request_iterator, context):
        try:
            caller = self._caller(context)
            requests = serde.from_frames(request_iterator)
            yield from serde.to_frames(self.passive.handle(caller, requests))
        except FedCreditError as e:
            log.info("request refused: %s: %s", type(e).__name__, e)
            context.set_trailing_metadata(((ERROR_METADATA, type(e).__name__),))
            context.abort(getattr(grpc.StatusCode, e.grpc_status), str(e))
        except grpc.RpcError:
            raise
        except Exception:  # never crash the server; never echo internals to the bank
            if context.is_active():
                log.exception("internal error while serving a request")
                context.abort(grpc.StatusCode.INTERNAL, "internal error in the holder "
                              "(details are in the holder's log)")


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
        Concurrent calls served.
    """

    def __init__(self, passive, address: str = "127.0.0.1:50051", tls_dir=None,
                 insecure: bool = False, max_workers: int = 16):
        self.passive = passive
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers),
                                  options=server_options(),
                                  maximum_concurrent_rpcs=max_workers * 4)
        pbg.add_PassivePartyServicer_to_server(_Servicer(passive, insecure), self.server)
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        if insecure:
            self.port = self.server.add_insecure_port(address)
        else:
            if tls_dir is None:
                raise FedCreditError("a TLS directory is required unless insecure=True")
            self.port = self.server.add_secure_port(address, tls.server_credentials(tls_dir))
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

    def stop(self, grace: float | None = 5.0) -> None:
        """Refuse new calls, let running ones finish for ``grace`` seconds."""
        for name in ("", SERVICE_NAME):
            self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        self.server.stop(grace).wait()
        self._stopped.set()

    def wait(self) -> None:
        self.server.wait_for_termination()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop(0)
