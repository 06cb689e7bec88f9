"""The bank's gRPC channel to a holder: the same :class:`Channel` as the in-process one."""
from __future__ import annotations

import grpc

from ..errors import ERROR_TYPES, FedCreditError, PeerUnavailable
from ..protocol.channel import Channel
from . import serde, tls
from .generated import fedcredit_pb2_grpc as pbg
from .server import ERROR_METADATA, INSECURE_BANK_METADATA, server_options

#: default deadline of one exchange; a tree level over a million rows takes minutes
DEFAULT_TIMEOUT = 3600.0


class GrpcChannel(Channel):
    """A gRPC connection to a holder.

    Parameters
    ----------
    address : str
        ``host:port`` of the holder.
    tls_dir : path
        Directory with ``ca.pem`` and this bank's ``<bank>.pem``/``.key`` (or ``bank.pem``).
    bank_name : str, optional
        Which client certificate in ``tls_dir`` to present.
    purpose : str
        Purpose of use presented when sessions open.
    insecure : bool
        Plaintext, for tests; ``bank`` then names the caller.
    timeout : float
        Deadline of each exchange in seconds.
    """

    def __init__(self, address: str, tls_dir=None, *, bank_name: str | None = None,
                 purpose: str = "credit", insecure: bool = False, bank: str = "demo-bank",
                 timeout: float = DEFAULT_TIMEOUT):
        self.address = address
        self.purpose = purpose
        self.timeout = timeout
        options = list(server_options())
        if insecure:
            self._grpc = grpc.insecure_channel(address, options=options)
            self._metadata: tuple[tuple[str, str], ...] = ((INSECURE_BANK_METADATA, bank),)
        else:
            if tls_dir is None and bank_name is None:
                raise FedCreditError("connect: pass tls_dir= (mutual TLS) or insecure=True")
            creds = tls.channel_credentials(tls_dir, bank_name=bank_name)
            self._grpc = grpc.secure_channel(address, creds,
                                             options=options + tls.channel_options(address))
            self._metadata = ()
        self._stub = pbg.PassivePartyStub(self._grpc)

    def exchange(self, requests):
        failure: list[Exception] = []

        def frames():
            # gRPC pulls requests on its own thread; keep the bank's own errors (say, an
            # encryption failure) so they surface as themselves, not as a cancelled call
            try:
                yield from serde.to_frames(requests)
            except Exception as e:  # noqa: BLE001 - re-raised below (GeneratorExit is not ours)
                failure.append(e)
                raise

        call = self._stub.Exchange(frames(), timeout=self.timeout, metadata=self._metadata)
        try:
            yield from serde.from_frames(call)
        except grpc.RpcError as e:
            if failure:
                raise failure[0] from None
            raise _error_from(e) from None
        finally:
            call.cancel()

    def wait_ready(self, timeout: float = 10.0) -> None:
        try:
            grpc.channel_ready_future(self._grpc).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise PeerUnavailable(f"no holder answered at {self.address} within {timeout} s") \
                from None

    def close(self) -> None:
        self._grpc.close()

    def __repr__(self) -> str:
        return f"GrpcChannel({self.address!r}, purpose={self.purpose!r})"


def _error_from(e: grpc.RpcError) -> FedCreditError:
    md = dict(e.trailing_metadata() or ())
    cls = ERROR_TYPES.get(md.get(ERROR_METADATA, ""))
    detail = e.details() or ""
    if cls is not None:
        return cls(detail)
    code = e.code()
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                grpc.StatusCode.CANCELLED):
        return PeerUnavailable(f"holder unavailable ({code.name}): {detail}")
    return FedCreditError(f"holder error {code.name}: {detail}")


def connect(address: str, tls_dir=None, *, purpose: str = "credit", insecure: bool = False,
            bank_name: str | None = None, timeout: float = DEFAULT_TIMEOUT,
            wait: float | None = 10.0, **kwargs) -> GrpcChannel:
    """Open a channel to a running holder and wait until it answers.

    >>> holder = fedcredit.connect("127.0.0.1:50051", tls_dir="certs")   # doctest: +SKIP
    >>> SecureBoostClassifier().fit(X, y, holder=holder)                   # doctest: +SKIP
    """
    ch = GrpcChannel(address, tls_dir, bank_name=bank_name, purpose=purpose, insecure=insecure,
                     timeout=timeout, **kwargs)
    if wait:
        ch.wait_ready(wait)
    return ch
