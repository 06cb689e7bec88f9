"""Shared fixtures: small data, insecure-for-tests keys, and one channel fixture over both
transports (in-process, and real gRPC with mutual TLS on localhost)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fedcredit.datasets import load_default_credit
from fedcredit.protocol import HolderPolicy, InProcessChannel, PassiveParty

#: 1024-bit keys are INSECURE: used in tests only, with insecure=True everywhere
TEST_KEY_BITS = 1024


@pytest.fixture(scope="session")
def default_credit():
    guest, host = load_default_credit()
    guest = guest.set_index("id") if "id" in guest.columns else guest
    host = host.set_index("id") if "id" in host.columns else host
    guest.index = guest.index.astype(str)
    host.index = host.index.astype(str)
    return guest, host


@pytest.fixture(scope="session")
def small_credit(default_credit):
    """4,000 bank rows, the holder has 90 % of them plus 300 others."""
    guest, host = default_credit
    bank = guest.iloc[:4000].copy()
    y = bank.pop("y").to_numpy()
    holder = pd.concat([host.iloc[:3600], host.iloc[10_000:10_300]])
    return bank, y, holder


def test_policy(**kw) -> HolderPolicy:
    base = dict(allow_insecure_keys=True, min_node_samples=10)
    base.update(kw)
    return HolderPolicy(**base)


test_policy.__test__ = False  # a helper, not a test


@pytest.fixture(scope="session")
def tls_dir(tmp_path_factory):
    from fedcredit.transport.tls import make_dev_certs

    d = tmp_path_factory.mktemp("tls")
    make_dev_certs(d)
    return d


class GrpcHolder:
    """A real gRPC server with mutual TLS on 127.0.0.1 around a PassiveParty."""

    def __init__(self, passive, tls_dir):
        from fedcredit.transport import HolderServer

        self.server = HolderServer(passive, "127.0.0.1:0", tls_dir=tls_dir).start()
        self.tls_dir = tls_dir

    def channel(self, **kw):
        from fedcredit.transport import connect

        return connect(self.server.address, tls_dir=self.tls_dir, **kw)

    def stop(self):
        self.server.stop(0)


@pytest.fixture(params=["inprocess", "grpc"])
def make_channel(request, tls_dir):
    """``make_channel(passive) -> Channel`` over the parametrised transport."""
    servers = []

    def make(passive, **kw):
        if request.param == "inprocess":
            return InProcessChannel(passive, **kw)
        h = GrpcHolder(passive, tls_dir)
        servers.append(h)
        return h.channel(**kw)

    make.transport = request.param
    yield make
    for h in servers:
        h.stop()


@pytest.fixture
def holder_party(small_credit):
    _, _, holder = small_credit
    return PassiveParty(holder, name="test-holder", policy=test_policy())


def stratified_split(y, test_size=0.3, seed=0):
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    tr, te = train_test_split(idx, test_size=test_size, random_state=seed, stratify=y)
    return np.sort(tr), np.sort(te)
