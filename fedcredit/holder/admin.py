"""The platform portal's admin API: its credential, its listener, and its lifecycle.

The portal grants, withdraws and lists consents as enterprises act on it, over HTTP JSON on
a port of its own (``[admin] listen`` in ``holder.toml``; the endpoints are in
:mod:`fedcredit.holder.admin_app`). ``holder serve`` starts it with :func:`start_admin`
beside the gRPC service; it runs uvicorn in a thread of the same process.

**Credential**: one bearer token, made by ``fedcredit holder admin token`` and printed once.
Only its SHA-256 is kept, in the store's ``meta`` table (not a file): a new token replaces
the old one in the same transaction as the audit record of the change, a rotation takes
effect at the next request without a restart (every request reads the hash), and whoever
can read the hash learns nothing usable (it is the hash of 256 random bits). Whoever can
write the store could put a hash of their own there, but could then change the consents
directly anyway. Tokens are compared as SHA-256 digests with :func:`hmac.compare_digest`.

**Transport**: with ``admin.tls`` (the default) HTTPS with the holder's server certificate
(``<tls.dir>/holder.pem`` and ``holder.key``); plain HTTP is refused unless the listen
address is a loopback one.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import secrets
import socket
import sqlite3
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InvalidInput
from . import audit, store
from .config import HolderConfig

log = logging.getLogger("fedcredit.holder.admin")

TOKEN_KEY = "admin_token_sha256"
TOKEN_PREFIX = "fca_"
#: how long start_admin waits for uvicorn to accept connections
START_TIMEOUT = 15.0
#: TLS 1.2 suites with forward secrecy and AEAD only (TLS 1.3 suites are all of that kind)
CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


# -- the token ---------------------------------------------------------------------------------
def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_token(con: sqlite3.Connection) -> tuple[str, bool]:
    """Make a new token, keep its SHA-256 (replacing any earlier token) with an audit record
    in one transaction; returns (token, whether one was replaced). The token itself is
    never stored or logged."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    digest = token_digest(token)
    with store.write(con):
        replaced = con.execute("SELECT 1 FROM meta WHERE key = ?", (TOKEN_KEY,)).fetchone()
        con.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE "
                    "SET value = excluded.value", (TOKEN_KEY, digest))
        audit.append(con, actor=audit.operator(), operation="admin_token",
                     detail=f"fingerprint={digest[:12]} replaced={'yes' if replaced else 'no'}")
    return token, bool(replaced)


def stored_digest(con: sqlite3.Connection) -> str | None:
    row = con.execute("SELECT value FROM meta WHERE key = ?", (TOKEN_KEY,)).fetchone()
    return None if row is None else str(row[0])


def token_matches(presented: str, digest: str | None) -> bool:
    """Constant-time: the presented token's SHA-256 against the stored one."""
    if not digest:
        return False
    return hmac.compare_digest(token_digest(presented), digest)


# -- the listen address ------------------------------------------------------------------------
def parse_listen(listen: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port), checked."""
    host, sep, port_text = listen.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise InvalidInput(f"admin.listen {listen!r} must be host:port with a port in "
                           "[0, 65535] (e.g. 127.0.0.1:8600)")
    return host, int(port_text)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_tls_files(tls_dir: Path) -> tuple[Path, Path]:
    cert, key = tls_dir / "holder.pem", tls_dir / "holder.key"
    for p in (cert, key):
        if not p.is_file():
            raise InvalidInput(f"admin API: {p} is missing (admin.tls = true serves HTTPS with "
                               "the holder's server certificate)")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as e:
        raise InvalidInput(f"admin API: {cert} and {key} are not a usable certificate and "
                           f"key: {e}") from None
    return cert, key


def _bind(host: str, port: int, listen: str) -> socket.socket:
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(addr)
            sock.listen(64)
        except OSError:
            sock.close()
            raise
    except OSError as e:
        raise InvalidInput(f"admin.listen {listen!r}: cannot listen there: {e}") from None
    return sock


# -- the running API ---------------------------------------------------------------------------
@dataclass
class AdminHandle:
    """The admin API running in this process: ``port`` (the bound one when listen said 0),
    ``url``, and ``stop()``."""

    port: int
    url: str
    _server: object = field(repr=False)
    _thread: threading.Thread = field(repr=False)
    _con: sqlite3.Connection = field(repr=False)
    _sock: socket.socket = field(repr=False)
    _started: bool = False
    _stopped: bool = False

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting, let running requests end (up to ``timeout``), close the store."""
        if self._stopped:
            return
        self._stopped = True
        self._server.should_exit = True  # type: ignore[attr-defined]
        self._thread.join(timeout)
        self._sock.close()
        try:
            if self._started:
                audit.record_operator(self._con, "admin_api_stop", f"url={self.url}")
        except Exception as e:  # a full disk must not turn a clean stop into a crash
            log.error("admin API stop not recorded", extra={"fields": {"reason": str(e)}})
        self._con.close()
        log.info("admin API stopped", extra={"fields": {"url": self.url}})


def start_admin(cfg: HolderConfig) -> AdminHandle:
    """Start the admin API of ``cfg`` (``admin_listen`` must be set) and return once it
    accepts connections.

    Raises
    ------
    InvalidInput
        No token was ever made, plain HTTP on a non-loopback address, missing or unusable
        TLS files, or the address cannot be listened on. Nothing is left running.
    """
    import uvicorn

    from .admin_app import make_app

    if not cfg.admin_listen:
        raise InvalidInput(f"{cfg.dir}: admin.listen is empty: the admin API is off")
    host, port = parse_listen(cfg.admin_listen)
    if not cfg.admin_tls and not is_loopback(host):
        raise InvalidInput(f"admin.listen {cfg.admin_listen!r} is not a loopback address: plain "
                           "HTTP is allowed on loopback only; set admin.tls = true")
    tls_files = _check_tls_files(cfg.tls_dir) if cfg.admin_tls else None
    con = store.connect(cfg.db_path)
    try:
        if stored_digest(con) is None:
            raise InvalidInput(f"the admin API has no token: run `fedcredit holder admin token "
                               f"--dir {cfg.dir}` and give the token to the portal")
        sock = _bind(host, port, cfg.admin_listen)
    except BaseException:
        con.close()
        raise
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    url = f"{'https' if tls_files else 'http'}://{shown}:{bound}"
    tls_kw = {} if tls_files is None else {"ssl_certfile": str(tls_files[0]),
                                          "ssl_keyfile": str(tls_files[1]), "ssl_ciphers": CIPHERS}
    config = uvicorn.Config(make_app(cfg, con), log_config=None, access_log=False,
                            loop="asyncio", http="h11", lifespan="off", server_header=False,
                            limit_concurrency=64, timeout_keep_alive=5,
                            h11_max_incomplete_event_size=16 * 1024, **tls_kw)  # type: ignore
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True,
                              name="holder-admin-api")
    handle = AdminHandle(bound, url, server, thread, con, sock)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            handle.stop(timeout=2)
            raise InvalidInput(f"the admin API did not start on {cfg.admin_listen} (see the "
                               "log for uvicorn's reason)")
        time.sleep(0.02)
    try:
        audit.record_operator(con, "admin_api_start", f"url={url} tls={bool(tls_files)}")
    except BaseException:
        handle.stop(timeout=2)
        raise
    handle._started = True
    log.info("admin API listening", extra={"fields": {"url": url, "port": bound,
                                                      "tls": bool(tls_files)}})
    return handle
