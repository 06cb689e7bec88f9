"""Mutual TLS: the dev PKI, credential loading, and a real gRPC server that checks identities.

The server is one generic unary method answering with :func:`peer_identity` of the caller,
so each test asks "who does the holder think I am?" and every refused handshake is checked
both on the client (an ``RpcError``) and on the server (the handler never ran).
"""
from __future__ import annotations

import hashlib
import os
import ssl
import stat
import threading
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from fedcredit.errors import InvalidInput, Unauthenticated
from fedcredit.holder import devca
from fedcredit.transport import tls
from fedcredit.transport.pin import IssuerPin

TIMEOUT = 5
METHOD = "/fedcredit.test.Tls/Who"
REFUSED = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNKNOWN}


# --------------------------------------------------------------------------- fixtures


class WhoServer:
    """A gRPC server whose one method returns the caller's certificate identity."""

    def __init__(self, credentials: grpc.ServerCredentials | None, pin=None):
        self.calls: list[str] = []
        self.pin = pin
        self._lock = threading.Lock()
        handler = grpc.method_handlers_generic_handler(
            "fedcredit.test.Tls",
            {"Who": grpc.unary_unary_rpc_method_handler(
                self._who, request_deserializer=None, response_serializer=None)},
        )
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), handlers=[handler])
        if credentials is None:
            self.port = self.server.add_insecure_port("127.0.0.1:0")
        else:
            self.port = self.server.add_secure_port("127.0.0.1:0", credentials)
        self.target = f"127.0.0.1:{self.port}"
        self.server.start()

    def _who(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        try:
            name = tls.peer_identity(context, self.pin)
        except Unauthenticated as exc:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
        with self._lock:
            self.calls.append(name)
        return name.encode()

    def stop(self) -> None:
        self.server.stop(None)


def ask(target: str, credentials: grpc.ChannelCredentials | None, options=()) -> str:
    """Call the server once; return the identity it saw."""
    if credentials is None:
        channel = grpc.insecure_channel(target)
    else:
        channel = grpc.secure_channel(target, credentials, options=list(options))
    with channel:
        return channel.unary_unary(METHOD)(b"", timeout=TIMEOUT).decode()


def assert_refused(server: WhoServer, credentials, options=()) -> grpc.RpcError:
    before = len(server.calls)
    with pytest.raises(grpc.RpcError) as info:
        ask(server.target, credentials, options)
    assert info.value.code() in REFUSED, info.value.code()
    assert len(server.calls) == before, "the handler ran for a refused client"
    return info.value


@pytest.fixture(scope="module")
def dev(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tls")
    devca.make_dev_certs(out)
    return out


@pytest.fixture(scope="module")
def other_dev(tmp_path_factory) -> Path:
    """A second, unrelated development PKI (same file names, another CA)."""
    out = tmp_path_factory.mktemp("tls-other")
    devca.make_dev_certs(out)
    return out


@pytest.fixture(scope="module")
def server(dev):
    srv = WhoServer(tls.server_credentials(dev))
    yield srv
    srv.stop()


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


# --------------------------------------------------------------------------- dev PKI


def test_make_dev_certs_files_and_extensions(dev):
    names = {"ca.pem", "ca.key", "holder.pem", "holder.key", "demo-bank.pem", "demo-bank.key",
             "bank.pem", "bank.key"}
    assert names <= {p.name for p in dev.iterdir()}
    assert not [p for p in dev.iterdir() if p.name.endswith(".tmp")]

    ca, holder, bank = load(dev / "ca.pem"), load(dev / "holder.pem"), load(dev / "demo-bank.pem")
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    holder.verify_directly_issued_by(ca)
    bank.verify_directly_issued_by(ca)

    assert tls.cert_subject(dev / "holder.pem") == "CN=fedcredit-holder,O=fedcredit development"
    san = holder.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}
    eku = holder.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]

    assert tls.cert_subject(dev / "demo-bank.pem").startswith("CN=demo-bank,")
    eku = bank.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    # bank.pem / bank.key are the first bank's pair
    assert (dev / "bank.pem").read_bytes() == (dev / "demo-bank.pem").read_bytes()
    assert (dev / "bank.key").read_bytes() == (dev / "demo-bank.key").read_bytes()


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_private_keys_are_0600(dev):
    for name in ("ca.key", "holder.key", "demo-bank.key", "bank.key"):
        assert stat.S_IMODE((dev / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE((dev / "ca.pem").stat().st_mode) == 0o644


def test_refuses_to_overwrite(tmp_path):
    devca.make_dev_certs(tmp_path)
    before = tls.cert_fingerprint(tmp_path / "ca.pem")
    with pytest.raises(InvalidInput, match=r"ca\.pem already exists"):
        devca.make_dev_certs(tmp_path)
    assert tls.cert_fingerprint(tmp_path / "ca.pem") == before

    # one existing file among many is enough to refuse, and nothing else is written
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "holder.key").write_bytes(b"keep me")
    with pytest.raises(InvalidInput, match=r"holder\.key already exists"):
        devca.make_dev_certs(tmp_path / "new")
    assert [p.name for p in (tmp_path / "new").iterdir()] == ["holder.key"]
    assert (tmp_path / "new" / "holder.key").read_bytes() == b"keep me"

    paths = devca.make_dev_certs(tmp_path, overwrite=True)
    assert tls.cert_fingerprint(paths["ca.pem"]) != before


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    real_replace = os.replace
    calls = []

    def flaky_replace(src, dst):
        calls.append(dst)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(devca.os, "replace", flaky_replace)
    with pytest.raises(InvalidInput, match="No space left"):
        devca.make_dev_certs(tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_validates_arguments_before_writing(tmp_path):
    for kwargs, msg in [
        ({"bank_names": ("../evil",)}, "bank name"),
        ({"bank_names": ("holder",)}, "reserved"),
        ({"bank_names": ("a", "a")}, "twice"),
        ({"bank_names": ()}, "empty"),
        ({"bank_names": "demo-bank"}, "not one string"),
        ({"holder_hosts": ("bad host!",)}, "neither an IP"),
        ({"holder_hosts": ()}, "empty"),
        ({"days": 0}, "days"),
        ({"days": 1.5}, "days"),
    ]:
        with pytest.raises(InvalidInput, match=msg):
            devca.make_dev_certs(tmp_path / "x", **kwargs)
    assert not (tmp_path / "x").exists()


def test_cert_fingerprint_and_subject(dev, tmp_path):
    der = ssl.PEM_cert_to_DER_cert((dev / "holder.pem").read_text())
    expected = hashlib.sha256(der).hexdigest()
    assert tls.cert_fingerprint(dev / "holder.pem") == expected
    (tmp_path / "holder.der").write_bytes(der)
    assert tls.cert_fingerprint(tmp_path / "holder.der") == expected
    assert tls.cert_subject(tmp_path / "holder.der").startswith("CN=fedcredit-holder")
    with pytest.raises(InvalidInput, match="does not exist"):
        tls.cert_fingerprint(tmp_path / "missing.pem")
    with pytest.raises(InvalidInput, match="X.509 certificate"):
        tls.cert_subject(dev / "holder.key")


# --------------------------------------------------------------------------- credentials


def test_credential_errors_name_the_file(dev, other_dev, tmp_path):
    with pytest.raises(InvalidInput, match="pass tls_dir"):
        tls.server_credentials()
    with pytest.raises(InvalidInput, match=r"holder\.pem does not exist"):
        tls.server_credentials(tmp_path)
    with pytest.raises(InvalidInput, match=r"nobody\.pem does not exist"):
        tls.channel_credentials(dev, bank_name="nobody")
    with pytest.raises(InvalidInput, match="bank name"):
        tls.channel_credentials(dev, bank_name="../ca")
    (tmp_path / "other.key").write_bytes((other_dev / "bank.key").read_bytes())
    with pytest.raises(InvalidInput, match=r"other\.key does not belong to certificate"):
        tls.channel_credentials(dev, key=tmp_path / "other.key")
    (tmp_path / "garbage.key").write_bytes(b"-----BEGIN PRIVATE KEY-----\nAAAA\n")
    with pytest.raises(InvalidInput) as info:
        tls.server_credentials(dev, key=tmp_path / "garbage.key")
    assert "garbage.key" in str(info.value) and "AAAA" not in str(info.value)
    # an encrypted key gets its own explanation
    key = serialization.load_pem_private_key((dev / "bank.key").read_bytes(), None)
    (tmp_path / "enc.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw")))
    with pytest.raises(InvalidInput, match="encrypted"):
        tls.channel_credentials(dev, key=tmp_path / "enc.key")


def test_key_material_never_in_error_messages(dev):
    secret = (dev / "bank.key").read_text()
    body = "".join(secret.splitlines()[1:-1])
    # the key file given where a certificate is expected
    with pytest.raises(InvalidInput) as info:
        tls.channel_credentials(dev, cert=dev / "bank.key")
    assert body[:16] not in str(info.value)


def test_world_readable_key_warns(dev, tmp_path, caplog):
    if os.name != "posix":
        pytest.skip("POSIX file modes")
    loose = tmp_path / "loose.key"
    loose.write_bytes((dev / "bank.key").read_bytes())
    loose.chmod(0o644)
    with caplog.at_level("WARNING", logger="fedcredit.transport.tls"):
        tls.channel_credentials(dev, key=loose)
    assert "readable by group or others" in caplog.text
    assert "PRIVATE KEY" not in caplog.text


def test_channel_options():
    override = [("grpc.ssl_target_name_override", tls.TARGET_NAME_OVERRIDE)]
    for target in ("127.0.0.1:50051", "[::1]:50051", "ipv4:127.0.0.1:1", "ipv6:[::1]:1",
                   "127.0.0.2:7"):
        assert tls.channel_options(target) == override, target
    for target in ("holder.example.gov.cn:443", "10.0.0.5:50051", "localhost:50051", None):
        assert tls.channel_options(target) == [], target
    assert tls.channel_options("10.0.0.5:1", server_name="holder.example") == [
        ("grpc.ssl_target_name_override", "holder.example")]
    with pytest.raises(InvalidInput):
        tls.channel_options(server_name="bad name")


# --------------------------------------------------------------------------- peer_identity


class FakeContext:
    def __init__(self, auth):
        self._auth = auth

    def auth_context(self):
        return self._auth


def test_peer_identity_from_auth_context():
    ssl_ = {"transport_security_type": [b"ssl"]}
    assert tls.peer_identity(FakeContext({**ssl_, "x509_common_name": [b"bank-a"],
                                          "x509_subject_alternative_name": [b"x"]})) == "bank-a"
    assert tls.peer_identity(FakeContext({**ssl_, "x509_subject_alternative_name":
                                          [b"bank-b.example", b"other"]})) == "bank-b.example"
    for auth in ({}, ssl_, {**ssl_, "x509_common_name": [b""]},
                 {"transport_security_type": [b"insecure"], "x509_common_name": [b"forged"]}):
        with pytest.raises(Unauthenticated):
            tls.peer_identity(FakeContext(auth))


# --------------------------------------------------------------------------- real gRPC


@pytest.mark.grpc
def test_bank_from_dev_ca_is_identified(server, dev):
    creds = tls.channel_credentials(dev)
    channel = grpc.secure_channel(server.target, creds, options=tls.channel_options(server.target))
    with channel:
        grpc.channel_ready_future(channel).result(timeout=TIMEOUT)
        assert channel.unary_unary(METHOD)(b"", timeout=TIMEOUT) == b"demo-bank"
    assert server.calls[-1] == "demo-bank"
    # also by explicit bank name, and over the certificate's IP SAN without any override
    assert ask(server.target, tls.channel_credentials(dev, bank_name="demo-bank")) == "demo-bank"


@pytest.mark.grpc
def test_client_cert_from_another_ca_is_refused(server, dev, other_dev):
    creds = tls.channel_credentials(dev, cert=other_dev / "bank.pem", key=other_dev / "bank.key")
    assert_refused(server, creds)


@pytest.mark.grpc
def test_client_without_certificate_is_refused(server, dev):
    creds = grpc.ssl_channel_credentials(root_certificates=(dev / "ca.pem").read_bytes())
    assert_refused(server, creds)


@pytest.mark.grpc
def test_plaintext_to_tls_port_fails(server):
    assert_refused(server, None)


@pytest.mark.grpc
def test_bank_refuses_holder_from_another_ca(server, dev, other_dev):
    # the bank trusts only its own CA: a holder certified by another CA is not the holder
    creds = tls.channel_credentials(dev, ca=other_dev / "ca.pem")
    assert_refused(server, creds)


@pytest.mark.grpc
def test_server_name_is_checked(server, dev):
    creds = tls.channel_credentials(dev)
    assert_refused(server, creds, tls.channel_options(server_name="holder.elsewhere.example"))


@pytest.mark.grpc
def test_certificate_purposes_are_enforced(server, dev):
    # the holder's serverAuth certificate cannot act as a bank ...
    creds = tls.channel_credentials(dev, cert=dev / "holder.pem", key=dev / "holder.key")
    assert_refused(server, creds)
    # ... and a bank's clientAuth certificate cannot act as the holder
    fake = WhoServer(tls.server_credentials(dev, cert=dev / "bank.pem", key=dev / "bank.key"))
    try:
        assert_refused(fake, tls.channel_credentials(dev),
                       tls.channel_options(server_name="demo-bank"))
    finally:
        fake.stop()


@pytest.mark.grpc
def test_issue_bank_cert_adds_a_bank(server, dev):
    paths = devca.issue_bank_cert(dev, "second-bank")
    assert sorted(paths) == ["second-bank.key", "second-bank.pem"]
    if os.name == "posix":
        assert stat.S_IMODE(paths["second-bank.key"].stat().st_mode) == 0o600
    load(paths["second-bank.pem"]).verify_directly_issued_by(load(dev / "ca.pem"))
    # the running server trusts the CA, so the new bank works without a restart
    second = tls.channel_credentials(dev, bank_name="second-bank")
    assert ask(server.target, second) == "second-bank"
    assert server.calls[-1] == "second-bank"
    assert ask(server.target, tls.channel_credentials(dev)) == "demo-bank"

    with pytest.raises(InvalidInput, match=r"second-bank\.pem already exists"):
        devca.issue_bank_cert(dev, "second-bank")
    with pytest.raises(InvalidInput, match="reserved"):
        devca.issue_bank_cert(dev, "ca")


def test_issue_bank_cert_needs_the_ca(tmp_path, dev):
    with pytest.raises(InvalidInput, match=r"ca\.pem does not exist"):
        devca.issue_bank_cert(tmp_path, "x-bank")
    (tmp_path / "ca.pem").write_bytes((dev / "ca.pem").read_bytes())
    (tmp_path / "ca.key").write_bytes((dev / "holder.key").read_bytes())
    with pytest.raises(InvalidInput, match=r"ca\.key does not belong"):
        devca.issue_bank_cert(tmp_path, "x-bank")
    assert not (tmp_path / "x-bank.pem").exists()


@pytest.mark.grpc
def test_target_name_override_for_certificates_without_ip_san(tmp_path):
    # A holder certificate naming only "localhost": dialling 127.0.0.1 fails hostname
    # verification unless the bank verifies the name "localhost" instead.
    devca.make_dev_certs(tmp_path, holder_hosts=("localhost",))
    srv = WhoServer(tls.server_credentials(tmp_path))
    try:
        creds = tls.channel_credentials(tmp_path)
        assert_refused(srv, creds)
        assert ask(srv.target, creds, tls.channel_options(srv.target)) == "demo-bank"
    finally:
        srv.stop()


@pytest.mark.grpc
def test_plaintext_server_yields_no_identity():
    srv = WhoServer(None)
    try:
        with pytest.raises(grpc.RpcError) as info:
            ask(srv.target, None)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert srv.calls == []
    finally:
        srv.stop()


# --------------------------------------------------------------------------- issuer pin
def _intermediate_chain(dev: Path, out: Path) -> tuple[Path, Path]:
    """A bank certificate under an intermediate CA that the dev CA (pathLen=0) may not sign."""
    import datetime as dt

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    ca_key = serialization.load_pem_private_key((dev / "ca.key").read_bytes(), None)
    ca = load(dev / "ca.pem")
    now = dt.datetime.now(dt.timezone.utc)

    def cert(name, key, issuer_name, issuer_key, is_ca, usage=None):
        b = (x509.CertificateBuilder().subject_name(
                x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, name)]))
             .issuer_name(issuer_name).public_key(key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(now - dt.timedelta(minutes=5))
             .not_valid_after(now + dt.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True))
        if usage:
            b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        return b.sign(issuer_key, hashes.SHA256())

    mid_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(
        ec.SECP256R1())
    mid = cert("rogue intermediate", mid_key, ca.subject, ca_key, True)
    leaf = cert("intruder-bank", leaf_key, mid.subject, mid_key, False,
                ExtendedKeyUsageOID.CLIENT_AUTH)
    pem, key = out / "chain.pem", out / "intruder.key"
    pem.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (leaf, mid)))
    key.write_bytes(leaf_key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return pem, key


@pytest.mark.grpc
def test_a_bank_certificate_under_an_intermediate_is_refused_by_the_issuer_pin(dev, tmp_path):
    pem, key = _intermediate_chain(dev, tmp_path)
    creds = grpc.ssl_channel_credentials((dev / "ca.pem").read_bytes(), key.read_bytes(),
                                         pem.read_bytes())
    opts = tls.channel_options("127.0.0.1:1")
    loose = WhoServer(tls.server_credentials(dev))  # gRPC's own chain check alone
    pinned = WhoServer(tls.server_credentials(dev), pin=IssuerPin(dev / "ca.pem"))
    try:
        assert ask(loose.target, creds, opts) == "intruder-bank"  # what the pin is for
        with pytest.raises(grpc.RpcError) as info:
            ask(pinned.target, creds, opts)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "not issued directly by a CA" in info.value.details()
        assert not pinned.calls
        good = tls.channel_credentials(dev)
        assert ask(pinned.target, good, tls.channel_options(pinned.target)) == "demo-bank"
    finally:
        loose.stop()
        pinned.stop()
