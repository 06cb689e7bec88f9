"""Mutual TLS between the bank (gRPC client, active party) and the holder (server, passive).

The holder answers only a bank that presents a client certificate signed by a CA it trusts,
and the bank's identity *is* that certificate's common name (:func:`peer_identity`): consent
checks and the audit log key on it, so no bank can claim another's name. This module loads a
TLS directory into gRPC credentials, with errors that name the bad file, and reads the
verified identity on the server side. It writes nothing: the development CA that makes such a
directory is :mod:`fedcredit.holder.devca`; production brings its own CA, only the file names
matter. Private keys never appear in a log line or an error message. Typical use::

    server.add_secure_port("127.0.0.1:50051", server_credentials(tls_dir))
    channel = grpc.secure_channel("127.0.0.1:50051", channel_credentials(tls_dir),
                                  options=channel_options("127.0.0.1:50051"))
"""
from __future__ import annotations

import datetime as _dt
import ipaddress
import logging
import os
import re
import stat
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization

from ..errors import InvalidInput, Unauthenticated
from ..protocol.policy import BANK_NAME

__all__ = ["HOLDER_COMMON_NAME", "TARGET_NAME_OVERRIDE", "server_credentials",
           "channel_credentials", "channel_options", "peer_identity", "cert_subject",
           "cert_fingerprint"]

log = logging.getLogger(__name__)

#: Common name of the holder's server certificate.
HOLDER_COMMON_NAME = "fedcredit-holder"

#: Host name the bank checks the holder certificate against when it dials a loopback
#: address (``127.0.0.1:port``, ``[::1]:port``); the default dev holder certificate carries it.
TARGET_NAME_OVERRIDE = "localhost"

# Bank names become a certificate CN and a file name; these stems name the other TLS files.
_RESERVED_NAMES = frozenset({"ca", "holder", "bank"})
_DNS_NAME = re.compile(
    r"(?=.{1,253}$)(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)
# Back-date notBefore so a peer whose clock is slightly behind accepts a fresh certificate.
_CLOCK_SKEW = _dt.timedelta(minutes=5)


# --------------------------------------------------------------------------- credentials


def server_credentials(
    tls_dir: str | os.PathLike | None = None,
    *,
    cert: str | os.PathLike | None = None,
    key: str | os.PathLike | None = None,
    ca: str | os.PathLike | None = None,
) -> grpc.ServerCredentials:
    """gRPC server credentials for the holder that *require* a client certificate.

    A bank must present a certificate chaining to ``ca``; without one the TLS handshake
    fails and no handler runs. Files are read and checked now (PEM syntax, key matches the
    certificate, certificate currently valid) so that a misconfiguration fails at start-up
    with a message naming the file instead of as an opaque handshake error later.

    Parameters
    ----------
    tls_dir : path-like, optional
        Directory with ``holder.pem``, ``holder.key`` and ``ca.pem``.
    cert, key, ca : path-like, optional
        Explicit paths; each overrides the corresponding file of ``tls_dir``. ``ca`` may be a
        bundle of several CA certificates (PEM, concatenated).

    Returns
    -------
    grpc.ServerCredentials

    Raises
    ------
    InvalidInput
        A path is neither given nor derivable from ``tls_dir``, or a file is missing,
        unreadable, not PEM, expired, or the key does not belong to the certificate.
    """
    cert_p = _resolve(cert, tls_dir, "holder.pem", "cert")
    key_p = _resolve(key, tls_dir, "holder.key", "key")
    ca_p = _resolve(ca, tls_dir, "ca.pem", "ca")
    cert_pem, key_pem, ca_pem = _load_pair_and_ca(cert_p, key_p, ca_p)
    return grpc.ssl_server_credentials(
        [(key_pem, cert_pem)], root_certificates=ca_pem, require_client_auth=True
    )


def channel_credentials(
    tls_dir: str | os.PathLike | None = None,
    *,
    cert: str | os.PathLike | None = None,
    key: str | os.PathLike | None = None,
    ca: str | os.PathLike | None = None,
    bank_name: str | None = None,
) -> grpc.ChannelCredentials:
    """gRPC channel credentials for a bank: its client certificate and the CA to trust.

    The bank verifies the holder's certificate against ``ca`` and presents its own, whose CN
    becomes its identity at the holder (:func:`peer_identity`).

    Parameters
    ----------
    tls_dir : path-like, optional
        Directory with ``ca.pem`` and the bank's pair: ``<bank_name>.pem``/``.key`` if
        ``bank_name`` is given, else ``bank.pem``/``bank.key``.
    cert, key, ca : path-like, optional
        Explicit paths; each overrides the corresponding file of ``tls_dir``.
    bank_name : str, optional
        Which bank's pair to pick from ``tls_dir``.

    Returns
    -------
    grpc.ChannelCredentials

    Raises
    ------
    InvalidInput
        As :func:`server_credentials`, plus a malformed ``bank_name``.

    Notes
    -----
    Use it with :func:`channel_options` so that dialling ``127.0.0.1:port`` still checks the
    holder certificate against a name it carries.
    """
    stem = "bank" if bank_name is None else _check_bank_name(bank_name)
    cert_p = _resolve(cert, tls_dir, f"{stem}.pem", "cert")
    key_p = _resolve(key, tls_dir, f"{stem}.key", "key")
    ca_p = _resolve(ca, tls_dir, "ca.pem", "ca")
    cert_pem, key_pem, ca_pem = _load_pair_and_ca(cert_p, key_p, ca_p)
    return grpc.ssl_channel_credentials(
        root_certificates=ca_pem, private_key=key_pem, certificate_chain=cert_pem
    )


def channel_options(
    target: str | None = None, *, server_name: str | None = None
) -> list[tuple[str, str]]:
    """Channel options that pin the host name the holder certificate is checked against.

    gRPC checks the server certificate against the host of the target. The development
    holder certificate lists ``localhost``, ``127.0.0.1`` and ``::1``, but a certificate made
    for a real host name does not list loopback addresses, and tunnels or port forwards
    make the dialled address differ from the certificate's name. This returns
    ``[("grpc.ssl_target_name_override", name)]`` where ``name`` is ``server_name`` if
    given, :data:`TARGET_NAME_OVERRIDE` if ``target`` is a loopback IP literal
    (``127.0.0.1:50051``, ``[::1]:50051``, ``ipv4:...``/``ipv6:...``), and nothing otherwise.

    Parameters
    ----------
    target : str, optional
        The address passed to :func:`grpc.secure_channel`.
    server_name : str, optional
        The name to verify instead (must be a DNS name in the holder certificate's SAN).

    Returns
    -------
    list of (str, str)
        Options for :func:`grpc.secure_channel`; empty if no override applies.

    Notes
    -----
    The override changes only which name is verified (and the ``:authority`` header), never
    *whether* the certificate is verified: the chain must still lead to the trusted CA.
    """
    if server_name is not None:
        if not isinstance(server_name, str) or not _DNS_NAME.fullmatch(server_name):
            raise InvalidInput(f"server_name {server_name!r} is not a DNS host name")
        return [("grpc.ssl_target_name_override", server_name)]
    if target is not None and _is_loopback_target(target):
        return [("grpc.ssl_target_name_override", TARGET_NAME_OVERRIDE)]
    return []


# --------------------------------------------------------------------------- identity


def peer_identity(context: grpc.ServicerContext, pin=None) -> str:
    """The calling bank's identity, taken from its verified client certificate.

    Reads the gRPC auth context: the certificate's common name (``x509_common_name``), or
    if it has none the first SubjectAlternativeName. The holder's server credentials
    (:func:`server_credentials`) require and verify the certificate during the handshake,
    so a value here has been checked against the trusted CA; with ``pin`` the certificate
    must also be issued directly by a CA of ``ca.pem`` (see
    :class:`fedcredit.transport.pin.IssuerPin`).

    Parameters
    ----------
    context : grpc.ServicerContext
        The context passed to a servicer method.
    pin : fedcredit.transport.pin.IssuerPin, optional
        The holder's issuer rule.

    Returns
    -------
    str
        The bank name, e.g. ``"demo-bank"``.

    Raises
    ------
    Unauthenticated
        The connection is not TLS, or the peer presented no usable certificate identity.
    """
    auth = context.auth_context() or {}
    if auth.get("transport_security_type") != [b"ssl"]:
        raise Unauthenticated("the call did not arrive over TLS; no client certificate")
    if pin is not None:
        leaf = (auth.get("x509_pem_cert") or [b""])[0]
        pin.check(leaf if isinstance(leaf, bytes) else str(leaf).encode())
    for prop in ("x509_common_name", "x509_subject_alternative_name"):
        for raw in auth.get(prop) or ():
            try:
                name = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
            except UnicodeDecodeError:
                continue
            if name.strip():
                return name
    raise Unauthenticated("the client presented no certificate with a common name or SAN")


def cert_subject(path: str | os.PathLike) -> str:
    """The subject of the (first) certificate in ``path``, as an RFC 4514 string.

    ``path`` is a PEM (possibly a bundle; the first certificate is used) or DER certificate
    file; the result reads like ``"CN=demo-bank,O=fedcredit development"``. Raises
    :class:`~fedcredit.errors.InvalidInput` if the file is missing, unreadable or not a
    certificate.
    """
    return _load_certs(Path(path), allow_der=True)[0].subject.rfc4514_string()


def cert_fingerprint(path: str | os.PathLike) -> str:
    """SHA-256 fingerprint of the (first) certificate in ``path``: lowercase hex of the DER.

    ``path`` is a PEM or DER certificate file; the result is 64 hexadecimal digits, as
    ``openssl x509 -fingerprint -sha256`` prints without colons. Raises
    :class:`~fedcredit.errors.InvalidInput` if the file is missing, unreadable or not a
    certificate.
    """
    cert = _load_certs(Path(path), allow_der=True)[0]
    return cert.fingerprint(hashes.SHA256()).hex()


# --------------------------------------------------------------------------- helpers


def _check_bank_name(name: str) -> str:
    if not isinstance(name, str) or not BANK_NAME.fullmatch(name):
        raise InvalidInput(
            f"bank name {name!r} must be 1-64 characters of letters, digits, '.', '_' or '-' "
            "starting with a letter or digit"
        )
    if name.lower() in _RESERVED_NAMES:
        raise InvalidInput(f"bank name {name!r} is reserved (it names another TLS file)")
    return name


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _is_loopback_target(target: str) -> bool:
    """True if a gRPC target names a loopback IP literal (``127.0.0.1:1``, ``ipv6:[::1]:1``)."""
    if not isinstance(target, str):
        raise InvalidInput(f"target {target!r} is not a string")
    host = target
    for scheme in ("ipv4:", "ipv6:", "dns:///", "dns:"):
        if host.startswith(scheme):
            host = host[len(scheme):]
            break
    if host.startswith("["):
        host = host[1:host.find("]")] if "]" in host else host
    elif host.count(":") == 1:
        host = host.rsplit(":", 1)[0]
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _resolve(explicit, tls_dir, default_name: str, what: str) -> Path:
    if explicit is not None:
        return Path(explicit)
    if tls_dir is None:
        raise InvalidInput(f"no {what} file: pass tls_dir or {what}=<path>")
    return Path(tls_dir) / default_name


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InvalidInput(f"{what} file {path} does not exist") from None
    except IsADirectoryError:
        raise InvalidInput(f"{what} file {path} is a directory") from None
    except OSError as exc:
        raise InvalidInput(f"cannot read {what} file {path}: {exc.strerror}") from None


def _load_certs(path: Path, *, allow_der: bool = False) -> list[x509.Certificate]:
    data = _read(path, "certificate")
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        certs = []
    if not certs and allow_der:
        try:
            certs = [x509.load_der_x509_certificate(data)]
        except ValueError:
            certs = []
    if not certs:
        kind = "a PEM or DER" if allow_der else "a PEM"
        raise InvalidInput(f"{path} does not contain {kind} X.509 certificate")
    return certs


def _load_key(path: Path):
    data = _read(path, "private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise InvalidInput(
            f"private key {path} is encrypted; gRPC needs an unencrypted key file "
            "readable only by its owner"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        # The parser's message could quote key bytes: report only the file.
        raise InvalidInput(f"{path} does not contain a PEM private key") from None
    _warn_if_exposed(path)
    return key


def _warn_if_exposed(path: Path) -> None:
    if os.name != "posix":
        return
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return
    if mode & 0o077:
        log.warning("private key %s is readable by group or others (mode %o); chmod 600 it",
                    path, mode)


def _check_key_matches(key, cert: x509.Certificate, key_path: Path, cert_path: Path) -> None:
    def spki(k) -> bytes:
        return k.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    if spki(key.public_key()) != spki(cert.public_key()):
        raise InvalidInput(f"private key {key_path} does not belong to certificate {cert_path}")


def _valid_from(cert: x509.Certificate) -> _dt.datetime:
    # cryptography < 42 has only the naive-UTC properties
    value = getattr(cert, "not_valid_before_utc", None)
    return value or cert.not_valid_before.replace(tzinfo=_dt.timezone.utc)


def _valid_until(cert: x509.Certificate) -> _dt.datetime:
    value = getattr(cert, "not_valid_after_utc", None)
    return value or cert.not_valid_after.replace(tzinfo=_dt.timezone.utc)


def _check_current(cert: x509.Certificate, path: Path) -> None:
    now = _dt.datetime.now(_dt.timezone.utc)
    if now > _valid_until(cert):
        raise InvalidInput(f"certificate {path} expired on {_valid_until(cert):%Y-%m-%d}")
    if now + _CLOCK_SKEW < _valid_from(cert):
        raise InvalidInput(
            f"certificate {path} is not valid before {_valid_from(cert):%Y-%m-%d %H:%M} UTC"
        )


def _load_pair_and_ca(cert_p: Path, key_p: Path, ca_p: Path) -> tuple[bytes, bytes, bytes]:
    """Read a certificate chain, its key and a CA bundle; check they fit; return PEM bytes."""
    certs = _load_certs(cert_p)
    key = _load_key(key_p)
    cas = _load_certs(ca_p)
    _check_key_matches(key, certs[0], key_p, cert_p)
    _check_current(certs[0], cert_p)
    # Re-encode: gRPC takes PEM, and this drops stray text and normalises the key to PKCS#8.
    chain_pem = b"".join(_cert_pem(c) for c in certs)
    ca_pem = b"".join(_cert_pem(c) for c in cas)
    return chain_pem, _key_pem(key), ca_pem
