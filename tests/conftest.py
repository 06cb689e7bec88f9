"""Shared fixtures: small data, insecure-for-tests keys, and one channel fixture over both
transports (in-process, and real gRPC with mutual TLS on localhost)."""
from __future__ import annotations

import numpy as np
import pytest

from fedcredit.datasets import load_default_credit, make_credit_data
from fedcredit.errors import InvalidInput
from fedcredit.protocol import HolderPolicy, InProcessChannel, PassiveParty

#: 1024-bit keys are INSECURE: used in tests only, with insecure=True everywhere
TEST_KEY_BITS = 1024


@pytest.fixture(scope="session")
def default_credit():
    """The public UCI default-of-credit-card split (a shared/data folder, or
    $FEDCREDIT_DATA_DIR); skipped where absent."""
    try:
        return load_default_credit()
    except InvalidInput as e:
        pytest.skip(f"shared default_credit data not available: {e}")


#: holder columns the small fixtures keep: numeric, categorical, flags, with missing values
HOLDER_COLUMNS = ["tax_credit_rating", "abnormal_taxpayer", "social_insurance_months_paid",
                  "insured_headcount", "electricity_kwh_mean_3m", "utility_arrears_flag",
                  "admin_penalty_count", "court_judgements_as_defendant", "enterprise_type",
                  "registered_capital", "provident_fund_headcount", "enterprise_age_years"]


@pytest.fixture(scope="session")
def small_credit():
    """Synthetic USCC-keyed data: 4,000 bank rows, the holder has about 90 % of them and
    others; 12 holder features with categoricals and missing values."""
    bank, holder = make_credit_data(rows=4000, seed=5, overlap=0.9)
    bank = bank.set_index("uscc")
    holder = holder.set_index("uscc")
    cols = [c for c in HOLDER_COLUMNS if c in holder.columns]
    assert len(cols) == len(HOLDER_COLUMNS), sorted(holder.columns)
    y = bank.pop("label").to_numpy()
    return bank, y, holder[cols]


def test_policy(**kw) -> HolderPolicy:
    base = dict(allow_insecure_keys=True, min_node_samples=10)
    base.update(kw)
    return HolderPolicy(**base)


test_policy.__test__ = False  # a helper, not a test


@pytest.fixture(scope="session")
def tls_dir(tmp_path_factory):
    from fedcredit.holder.devca import make_dev_certs

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


class Revocable:
    """A consent registry where enterprises can be revoked (``revoked.add(id)``)."""

    def __init__(self):
        self.revoked: set[str] = set()

    def allowed(self, bank, purpose, ids):
        return np.array([i not in self.revoked for i in ids], dtype=bool)


class RecordingChannel(InProcessChannel):
    """An in-process channel that keeps every message as the bytes the wire would carry
    (and hands the holder the decoded copy), for tests that inspect the traffic."""

    def __init__(self, passive):
        super().__init__(passive)
        self.sent, self.received = [], []

    def exchange(self, requests):
        from fedcredit.transport import serde

        def tap(msgs, log):
            for msg in msgs:
                data = serde.encode(msg)
                log.append((msg, data))
                yield serde.decode(data)

        yield from tap(super().exchange(tap(requests, self.sent)), self.received)
