"""The holder's issuer rule for bank certificates (see :class:`IssuerPin`)."""
from __future__ import annotations

import os
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm

from ..errors import Unauthenticated
from .tls import _load_certs


class IssuerPin:
    """Bank certificates must be issued *directly* by a CA in ``ca.pem``.

    gRPC verifies the chain during the handshake, but a chain through an intermediate CA is
    accepted even where the trusted CA's ``pathLen`` forbids one (the dev CA has
    ``pathLen=0``); the holder's rule is simpler and stricter: the caller's certificate is
    signed by one of the certificates of ``ca.pem`` itself. With a corporate PKI, put the
    CA that issues bank certificates in ``ca.pem`` (with its root, which gRPC needs to
    complete the chain). Verified leaves are remembered, so a call costs one dictionary
    lookup.
    """

    def __init__(self, ca_path: str | os.PathLike):
        self.path = Path(ca_path)
        self.issuers = [c for c in _load_certs(self.path) if _is_ca(c)]
        self._seen: dict[bytes, bool] = {}

    def check(self, leaf_pem: bytes) -> None:
        ok = self._seen.get(leaf_pem)
        if ok is None:
            ok = self._directly_issued(leaf_pem)
            if len(self._seen) > 4096:
                self._seen.clear()
            self._seen[leaf_pem] = ok
        if not ok:
            raise Unauthenticated("the client certificate is not issued directly by a CA in "
                                  f"the holder's {self.path.name} (a certificate under an "
                                  "intermediate CA is refused)")

    def _directly_issued(self, leaf_pem: bytes) -> bool:
        try:
            leaf = x509.load_pem_x509_certificate(leaf_pem)
        except ValueError:
            return False
        for ca in self.issuers:
            try:
                leaf.verify_directly_issued_by(ca)
                return True
            except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
                continue
        return False


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False
