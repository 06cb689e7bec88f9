"""Mutual TLS between the bank (gRPC client, active party) and the holder (server, passive).

The holder only answers a bank that presents a client certificate signed by a CA it trusts,
and the bank's identity *is* that certificate's common name (:func:`peer_identity`): consent
checks and the audit log key on it, so no bank can claim another's name. This module makes
the development PKI (:func:`make_dev_certs`, :func:`issue_bank_cert`), loads key material
into gRPC credentials with errors that name the bad file, and reads the verified identity on
the server side. Production deployments bring their own CA; only the file names matter.

Layout of a TLS directory::

    ca.pem  ca.key            development CA (ca.key stays with the operator, never shipped)
    holder.pem  holder.key    holder server certificate (serverAuth, SAN = host names / IPs)
    <bank>.pem  <bank>.key    one client certificate per bank (clientAuth, CN = bank name)
    bank.pem  bank.key        copy of the first bank's pair, the client default

Typical use::

    server.add_secure_port("127.0.0.1:50051", server_credentials(tls_dir))
    channel = grpc.secure_channel("127.0.0.1:50051", channel_credentials(tls_dir),
                                  options=channel_options("127.0.0.1:50051"))

Private keys are written with mode 0600 and never appear in a log line or an error message.
"""
from __future__ import annotations

import datetime as _dt
import ipaddress
import logging
import os
import re
import secrets
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..errors import InvalidInput, Unauthenticated

__all__ = [
    "HOLDER_COMMON_NAME",
    "TARGET_NAME_OVERRIDE",
    "make_dev_certs",
    "issue_bank_cert",
    "server_credentials",
    "channel_credentials",
    "channel_options",
    "peer_identity",
    "cert_subject",
    "cert_fingerprint",
]

log = logging.getLogger(__name__)

#: Common name of the holder's server certificate.
HOLDER_COMMON_NAME = "fedcredit-holder"

#: Host name the bank checks the holder certificate against when it dials a loopback
#: address (``127.0.0.1:port``, ``[::1]:port``); the default dev holder certificate carries it.
TARGET_NAME_OVERRIDE = "localhost"

#: Default validity of development certificates, in days (the CA/Browser Forum's old cap).
DEFAULT_DAYS = 825

# Names become both a certificate CN and a file name: keep them to a portable alphabet.
_BANK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_RESERVED_NAMES = frozenset({"ca", "holder", "bank"})
_DNS_NAME = re.compile(
    r"(?=.{1,253}$)(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)
# Back-date notBefore so a peer whose clock is slightly behind accepts a fresh certificate.
_CLOCK_SKEW = _dt.timedelta(minutes=5)


# --------------------------------------------------------------------------- dev PKI


def make_dev_certs(
    out_dir: str | os.PathLike,
    *,
    holder_hosts: Sequence[str] = ("localhost", "127.0.0.1", "::1"),
    bank_names: Sequence[str] = ("demo-bank",),
    days: int = DEFAULT_DAYS,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Create a development CA, a holder server certificate and one client cert per bank.

    All keys are EC P-256; certificates are signed with ECDSA-SHA256. The CA is restricted to
    signing end-entity certificates (``pathLen=0``); the holder certificate has
    ``extendedKeyUsage=serverAuth`` and a SubjectAlternativeName listing ``holder_hosts``
    (IP literals as IP addresses, the rest as DNS names); each bank certificate has
    ``CN=<bank name>`` and ``extendedKeyUsage=clientAuth``. ``bank.pem``/``bank.key`` are a
    copy of the first bank's pair, the default :func:`channel_credentials` picks.

    Every certificate and key is generated in memory before any file is touched; each file
    is written to a temporary name and renamed into place, so a failure leaves no half-written
    file (files that did not exist before are removed again).

    Parameters
    ----------
    out_dir : path-like
        Directory to write to; created (mode 0700) if missing.
    holder_hosts : sequence of str
        Host names and IP addresses the holder is reached by. Keep ``"localhost"`` in it if
        banks dial a loopback address (see :data:`TARGET_NAME_OVERRIDE`).
    bank_names : sequence of str
        One client certificate per name. Names are 1-64 characters of ``[A-Za-z0-9._-]``
        starting with a letter or digit; ``ca``, ``holder`` and ``bank`` are reserved.
    days : int
        Validity of every certificate, from now.
    overwrite : bool
        Replace existing files. Without it an existing file is an error and nothing is
        written.

    Returns
    -------
    dict of str to Path
        File name (``"ca.pem"``, ``"holder.key"``, ``"demo-bank.pem"``, ...) to its path.

    Raises
    ------
    InvalidInput
        A bad host, bank name or ``days``, or a file exists and ``overwrite`` is false.

    Notes
    -----
    For development and tests only: ``ca.key`` sits next to the certificates it signed.
    In production the CA key stays offline and only ``ca.pem`` is distributed.
    """
    out = Path(out_dir)
    days = _check_days(days)
    hosts = _check_hosts(holder_hosts)
    banks = _check_bank_names(bank_names)
    files = {name: out / name for name in _dev_file_names(banks)}
    if not overwrite:
        _refuse_existing(files.values())

    ca_key = _new_key()
    ca_cert = _ca_certificate(ca_key, days)
    holder_key = _new_key()
    san: list[x509.GeneralName] = [
        x509.IPAddress(h) if isinstance(h, (ipaddress.IPv4Address, ipaddress.IPv6Address))
        else x509.DNSName(h)
        for h in hosts
    ]
    holder_cert = _leaf_certificate(
        HOLDER_COMMON_NAME, holder_key, ca_cert, ca_key, days,
        ExtendedKeyUsageOID.SERVER_AUTH, san,
    )
    contents: dict[str, tuple[bytes, bool]] = {
        "ca.pem": (_cert_pem(ca_cert), False),
        "ca.key": (_key_pem(ca_key), True),
        "holder.pem": (_cert_pem(holder_cert), False),
        "holder.key": (_key_pem(holder_key), True),
    }
    for i, bank in enumerate(banks):
        key = _new_key()
        cert = _leaf_certificate(bank, key, ca_cert, ca_key, days, ExtendedKeyUsageOID.CLIENT_AUTH)
        pair = {f"{bank}.pem": (_cert_pem(cert), False), f"{bank}.key": (_key_pem(key), True)}
        contents.update(pair)
        if i == 0:
            contents["bank.pem"] = pair[f"{bank}.pem"]
            contents["bank.key"] = pair[f"{bank}.key"]

    _mkdir_private(out)
    _write_files(out, contents, overwrite=overwrite)
    log.info("wrote development TLS files for %d bank(s) to %s", len(banks), out)
    return files


def issue_bank_cert(
    tls_dir: str | os.PathLike,
    bank_name: str,
    *,
    days: int = DEFAULT_DAYS,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Add a client certificate for another bank, signed by the CA in ``tls_dir``.

    Reads ``ca.pem`` and ``ca.key`` from ``tls_dir`` and writes ``<bank_name>.pem`` and
    ``<bank_name>.key`` (mode 0600) next to them, atomically. The holder needs no restart:
    it trusts the CA, not individual bank certificates.

    Parameters
    ----------
    tls_dir : path-like
        A directory made by :func:`make_dev_certs` (or holding any CA pair as
        ``ca.pem``/``ca.key``).
    bank_name : str
        The new bank's identity, used as the certificate CN and the file name.
    days : int
        Validity from now.
    overwrite : bool
        Replace an existing certificate of this bank.

    Returns
    -------
    dict of str to Path
        ``{"<bank_name>.pem": ..., "<bank_name>.key": ...}``.

    Raises
    ------
    InvalidInput
        Bad name or ``days``, a missing or unreadable CA file, a CA key that does not match
        the CA certificate, or an existing file without ``overwrite``.
    """
    tls = Path(tls_dir)
    days = _check_days(days)
    (bank,) = _check_bank_names([bank_name])
    files = {f"{bank}.pem": tls / f"{bank}.pem", f"{bank}.key": tls / f"{bank}.key"}
    if not overwrite:
        _refuse_existing(files.values())

    ca_cert = _load_certs(tls / "ca.pem")[0]
    ca_key = _load_key(tls / "ca.key")
    _check_key_matches(ca_key, ca_cert, tls / "ca.key", tls / "ca.pem")
    try:
        is_ca = ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise InvalidInput(f"{tls / 'ca.pem'} is not a CA certificate (basicConstraints CA:FALSE)")

    key = _new_key()
    cert = _leaf_certificate(bank, key, ca_cert, ca_key, days, ExtendedKeyUsageOID.CLIENT_AUTH)
    _write_files(
        tls,
        {f"{bank}.pem": (_cert_pem(cert), False), f"{bank}.key": (_key_pem(key), True)},
        overwrite=overwrite,
    )
    log.info("issued a client certificate for bank %r in %s", bank, tls)
    return files


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
    stem = "bank" if bank_name is None else _check_bank_names([bank_name])[0]
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


def peer_identity(context: grpc.ServicerContext) -> str:
    """The calling bank's identity, taken from its verified client certificate.

    Reads the gRPC auth context: the certificate's common name (``x509_common_name``), or
    if it has none the first SubjectAlternativeName. The holder's server credentials
    (:func:`server_credentials`) require and verify the certificate during the handshake,
    so a value here has been checked against the trusted CA.

    Parameters
    ----------
    context : grpc.ServicerContext
        The context passed to a servicer method.

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

    Parameters
    ----------
    path : path-like
        A PEM (possibly a bundle; the first certificate is used) or DER certificate file.

    Returns
    -------
    str
        For example ``"CN=demo-bank,O=fedcredit development"``.

    Raises
    ------
    InvalidInput
        The file is missing, unreadable or not a certificate.
    """
    return _load_certs(Path(path), allow_der=True)[0].subject.rfc4514_string()


def cert_fingerprint(path: str | os.PathLike) -> str:
    """SHA-256 fingerprint of the (first) certificate in ``path``: lowercase hex of the DER.

    Parameters
    ----------
    path : path-like
        A PEM or DER certificate file.

    Returns
    -------
    str
        64 hexadecimal digits, as ``openssl x509 -fingerprint -sha256`` prints without colons.

    Raises
    ------
    InvalidInput
        The file is missing, unreadable or not a certificate.
    """
    cert = _load_certs(Path(path), allow_der=True)[0]
    return cert.fingerprint(hashes.SHA256()).hex()


# --------------------------------------------------------------------------- helpers


def _check_days(days: int) -> int:
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 36500:
        raise InvalidInput(f"days must be an integer between 1 and 36500, got {days!r}")
    return days


def _check_hosts(hosts: Iterable[str]):
    if isinstance(hosts, str):
        raise InvalidInput("holder_hosts must be a sequence of host names, not one string")
    out: list = []
    for h in hosts:
        if not isinstance(h, str):
            raise InvalidInput(f"holder host {h!r} is not a string")
        try:
            value = ipaddress.ip_address(h.strip("[]"))
        except ValueError:
            if not _DNS_NAME.fullmatch(h):
                raise InvalidInput(
                    f"holder host {h!r} is neither an IP address nor a DNS name"
                ) from None
            value = h.rstrip(".").lower()
        if value not in out:
            out.append(value)
    if not out:
        raise InvalidInput("holder_hosts is empty; the server certificate needs a name")
    return out


def _check_bank_names(names: Iterable[str]) -> list[str]:
    if isinstance(names, str):
        raise InvalidInput("bank_names must be a sequence of names, not one string")
    out: list[str] = []
    for n in names:
        if not isinstance(n, str) or not _BANK_NAME.fullmatch(n):
            raise InvalidInput(
                f"bank name {n!r} must be 1-64 characters of letters, digits, '.', '_' or '-' "
                "starting with a letter or digit"
            )
        if n.lower() in _RESERVED_NAMES:
            raise InvalidInput(f"bank name {n!r} is reserved (it names another TLS file)")
        if n in out:
            raise InvalidInput(f"bank name {n!r} is given twice")
        out.append(n)
    if not out:
        raise InvalidInput("bank_names is empty; at least one bank certificate is needed")
    return out


def _dev_file_names(banks: Sequence[str]) -> list[str]:
    names = ["ca.pem", "ca.key", "holder.pem", "holder.key"]
    for bank in banks:
        names += [f"{bank}.pem", f"{bank}.key"]
    return names + ["bank.pem", "bank.key"]


def _refuse_existing(paths: Iterable[Path]) -> None:
    for p in paths:
        if p.exists() or p.is_symlink():
            raise InvalidInput(f"{p} already exists; pass overwrite=True to replace it")


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _validity(days: int) -> tuple[_dt.datetime, _dt.datetime]:
    now = _dt.datetime.now(_dt.timezone.utc)
    return now - _CLOCK_SKEW, now + _dt.timedelta(days=days)


def _name(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fedcredit development"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def _ca_certificate(key: ec.EllipticCurvePrivateKey, days: int) -> x509.Certificate:
    # A random suffix keeps two dev CAs apart by name as well as by key.
    name = _name(f"fedcredit development CA {secrets.token_hex(4)}")
    not_before, not_after = _validity(days)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def _leaf_certificate(
    common_name: str,
    key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    ca_key,
    days: int,
    usage: x509.ObjectIdentifier,
    san: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    not_before, not_after = _validity(days)
    # Never outlive the issuer: a chain with an expired CA fails anyway, more obscurely.
    not_after = min(not_after, _valid_until(ca_cert))
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _mkdir_private(path: Path) -> None:
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInput(f"cannot create TLS directory {path}: {exc.strerror}") from None
    if not path.is_dir():
        raise InvalidInput(f"{path} exists and is not a directory")


def _write_files(out: Path, contents: dict[str, tuple[bytes, bool]], *, overwrite: bool) -> None:
    """Stage every file under a temporary name, then rename each into place.

    If anything fails, temporaries are removed and files this call created are unlinked, so
    the directory is left as it was (except files replaced under ``overwrite``).
    """
    staged: list[tuple[Path, Path]] = []
    created: list[Path] = []
    try:
        for name, (data, private) in contents.items():
            final = out / name
            tmp = out / f".{name}.{secrets.token_hex(6)}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
            staged.append((tmp, final))
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            # os.open's mode is filtered by the umask; make the intended mode exact.
            os.chmod(tmp, 0o600 if private else 0o644)
        if not overwrite:
            _refuse_existing(final for _, final in staged)
        for tmp, final in staged:
            existed = final.exists()
            os.replace(tmp, final)
            if not existed:
                created.append(final)
        _fsync_dir(out)
    except BaseException as exc:
        for tmp, _ in staged:
            _unlink_quietly(tmp)
        for path in created:
            _unlink_quietly(path)
        if isinstance(exc, OSError):
            raise InvalidInput(f"cannot write TLS files to {out}: {exc.strerror}") from None
        raise


def _fsync_dir(path: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError:
        log.warning("could not remove %s after a failed write", path)


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
