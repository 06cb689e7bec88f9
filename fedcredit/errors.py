"""One exception hierarchy for the whole library.

Every error a party can raise for the other side's input is a :class:`FedCreditError` whose
``grpc_status`` names the gRPC status code the server answers with; the gRPC client maps the
status back to the same class, so code behind either transport sees the same exceptions.
Messages name what is wrong and where, never a secret (no gradient, feature value, label,
threshold or key material).
"""
from __future__ import annotations


class FedCreditError(Exception):
    """Base class of every error fedcredit raises on purpose."""

    grpc_status = "INTERNAL"


class InvalidInput(FedCreditError, ValueError):
    """A file, argument, message or configuration value is malformed."""

    grpc_status = "INVALID_ARGUMENT"


class InvalidCiphertext(InvalidInput):
    """A received ciphertext is out of range, not a unit, or made under another key."""


class PackingOverflow(FedCreditError, OverflowError):
    """Values (or their sums) could exceed the plaintext slots they were given."""

    grpc_status = "OUT_OF_RANGE"


class PolicyViolation(FedCreditError):
    """The request is well formed but the holder's policy forbids it."""

    grpc_status = "PERMISSION_DENIED"


class InsecureParameters(PolicyViolation):
    """A key or parameter is below the security floor and no insecure flag allows it."""


class ConsentMissing(PolicyViolation):
    """The enterprise has not authorised this bank for this purpose (or it expired)."""


class Unauthenticated(FedCreditError):
    """The caller presented no acceptable identity."""

    grpc_status = "UNAUTHENTICATED"


class SessionNotFound(FedCreditError, LookupError):
    """The session id is unknown (never opened, expired, closed, or the holder restarted)."""

    grpc_status = "NOT_FOUND"


class ProtocolError(FedCreditError):
    """Messages arrived out of order, or the peer speaks another protocol version."""

    grpc_status = "FAILED_PRECONDITION"


class ResourceLimit(FedCreditError):
    """A size, rate or concurrency limit of the server was reached."""

    grpc_status = "RESOURCE_EXHAUSTED"


class PeerUnavailable(FedCreditError):
    """The other party could not be reached or went away mid-call."""

    grpc_status = "UNAVAILABLE"


class StoreUnavailable(FedCreditError):
    """The holder's store (audit log, sessions, models) cannot be written: a full or failing
    disk. The request is refused rather than answered without its audit record."""

    grpc_status = "UNAVAILABLE"


class UnsafeReply(FedCreditError):
    """A ciphertext vector derived by homomorphic operations was about to leave un-re-randomised."""


#: name -> class, used by the gRPC client to re-raise the server's error as the same type
ERROR_TYPES = {
    cls.__name__: cls
    for cls in (
        FedCreditError,
        InvalidInput,
        InvalidCiphertext,
        PackingOverflow,
        PolicyViolation,
        InsecureParameters,
        ConsentMissing,
        Unauthenticated,
        SessionNotFound,
        ProtocolError,
        ResourceLimit,
        PeerUnavailable,
        StoreUnavailable,
        UnsafeReply,
    )
}
