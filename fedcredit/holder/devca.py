"""The development certificate authority: an operator tool that writes a TLS directory.

:func:`make_dev_certs` creates a CA, the holder's server certificate and one client certificate
per bank; :func:`issue_bank_cert` later adds a bank signed by the same CA. Keys are written
mode 0600 and never logged or put in an error. :mod:`fedcredit.transport.tls` loads them::

    ca.pem  ca.key            development CA (ca.key stays with the operator, never shipped)
    holder.pem  holder.key    holder server certificate (serverAuth, SAN = host names / IPs)
    <bank>.pem  <bank>.key    one client certificate per bank (clientAuth, CN = bank name)
    bank.pem  bank.key        copy of the first bank's pair, the client default
"""
from __future__ import annotations

import datetime as _dt
import ipaddress
import logging
import os
import secrets
from collections.abc import Iterable, Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..errors import InvalidInput
from ..transport.tls import (
    _CLOCK_SKEW,
    _DNS_NAME,
    HOLDER_COMMON_NAME,
    _cert_pem,
    _check_bank_name,
    _check_key_matches,
    _key_pem,
    _load_certs,
    _load_key,
    _valid_until,
)

__all__ = ["DEFAULT_DAYS", "make_dev_certs", "issue_bank_cert"]

log = logging.getLogger(__name__)

#: Default validity of development certificates, in days (the CA/Browser Forum's old cap).
DEFAULT_DAYS = 825


#: what ``fedcredit certs dev`` makes without flags: a local holder and one demo bank
DEV_HOLDER_HOSTS = ("localhost", "127.0.0.1", "::1")
DEV_BANK_NAMES = ("demo-bank",)


def make_dev_certs(
    out_dir: str | os.PathLike,
    *,
    holder_hosts: Sequence[str] = DEV_HOLDER_HOSTS,
    bank_names: Sequence[str] = DEV_BANK_NAMES,
    days: int = DEFAULT_DAYS,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Create a development CA, a holder server certificate and one client cert per bank.

    All keys are EC P-256; certificates are signed with ECDSA-SHA256. The CA is restricted to
    signing end-entity certificates (``pathLen=0``); the holder certificate has
    ``extendedKeyUsage=serverAuth`` and a SubjectAlternativeName listing ``holder_hosts``
    (IP literals as IP addresses, the rest as DNS names); each bank certificate has
    ``CN=<bank name>`` and ``extendedKeyUsage=clientAuth``. ``bank.pem``/``bank.key`` are a
    copy of the first bank's pair, the default :func:`.channel_credentials` picks.

    Every certificate and key is generated in memory before any file is touched; each file
    is written to a temporary name and renamed into place, so a failure leaves no half-written
    file (files that did not exist before are removed again).

    Parameters
    ----------
    out_dir : path-like
        Directory to write to; created (mode 0700) if missing.
    holder_hosts : sequence of str
        Host names and IP addresses the holder is reached by. Keep ``"localhost"`` in it if
        banks dial a loopback address (see :data:`.TARGET_NAME_OVERRIDE`).
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
            value: ipaddress.IPv4Address | ipaddress.IPv6Address | str = ipaddress.ip_address(
                h.strip("[]"))
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
        _check_bank_name(n)
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
