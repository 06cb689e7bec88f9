"""The holder's gRPC server against a hostile bank: idle streams, call floods, bad first frames.

Every test runs a real server on 127.0.0.1 with mutual TLS. ``demo-bank`` and ``second-bank``
are listed in the holder's policy; ``stranger`` has a certificate from the same CA but is not
listed. Streams that never send are client request generators blocked on an event the test
sets at its end.
"""
from __future__ import annotations

import functools
import re
import threading
import time
from collections import Counter

import grpc
import pandas as pd
import pytest
from conftest import test_policy
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fedcredit.errors import PeerUnavailable, PolicyViolation
from fedcredit.holder.devca import make_dev_certs
from fedcredit.protocol import PassiveParty
from fedcredit.protocol import messages as m
from fedcredit.transport import HolderServer, connect, serde, tls
from fedcredit.transport.generated import fedcredit_pb2 as pb
from fedcredit.transport.server import ERROR_METADATA, MAX_HEALTH_WATCHES, RefusalAudit

pytestmark = pytest.mark.grpc

LISTED = ("demo-bank", "second-bank")
MORE = re.compile(r"\(\+(\d+) more in ")


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile-tls")
    make_dev_certs(d, bank_names=(*LISTED, "stranger"))
    return d


@pytest.fixture
def release():
    """Set at teardown: lets the client threads of idle streams finish."""
    ev = threading.Event()
    yield ev
    ev.set()


@pytest.fixture
def start(certs):
    servers: list[HolderServer] = []

    def make(**kw) -> HolderServer:
        holder = pd.DataFrame({"x": range(40)}, index=[f"e{i:03d}" for i in range(40)])
        party = PassiveParty(holder, name="hostile-test",
                             policy=test_policy(allowed_banks=LISTED))
        kw.setdefault("max_workers", 4)
        srv = HolderServer(party, "127.0.0.1:0", tls_dir=certs, **kw).start()
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        srv.stop(0)


def channel(srv, certs, bank="demo-bank", timeout=5.0):
    return connect(srv.address, tls_dir=certs, bank_name=bank, timeout=timeout, wait=5)


def health_status(srv, certs, bank="demo-bank"):
    creds = tls.channel_credentials(certs, bank_name=bank)
    with grpc.secure_channel(srv.address, creds,
                             options=tls.channel_options(srv.address)) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        return stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status


def idle(stop: threading.Event, frames=()):
    """Send ``frames``, then nothing until ``stop`` is set."""
    yield from frames
    stop.wait()


def records(srv, operation=None, bank=None):
    return [r for r in srv.passive.auditor.records
            if (operation is None or r["operation"] == operation)
            and (bank is None or r["bank"] == bank)]


def events(recs) -> int:
    """How many events a list of (possibly aggregated) records stands for."""
    return sum(1 + sum(int(n) for n in MORE.findall(r["detail"])) for r in recs)


def wait_until(cond, timeout=5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def frame_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "fedcredit-frames")


def error_name(err: grpc.RpcError) -> str:
    return dict(err.trailing_metadata() or ()).get(ERROR_METADATA, "")


def exchange(ch, frames, timeout=10):
    with pytest.raises(grpc.RpcError) as info:
        list(ch._stub.Exchange(iter(frames), timeout=timeout))
    return info.value


# -- (a) idle streams from an unlisted certificate ----------------------------------------------
def test_idle_streams_from_an_unlisted_bank_are_refused_before_reading(start, certs, release):
    srv = start()
    stranger = channel(srv, certs, bank="stranger")
    calls = [stranger._stub.Exchange(idle(release), timeout=60) for _ in range(20)]
    t0 = time.monotonic()
    assert health_status(srv, certs) == health_pb2.HealthCheckResponse.SERVING
    with channel(srv, certs) as ch:
        assert ch.call(m.Ping()).holder_name == "hostile-test"
    codes = [c.code() for c in calls]  # every one already answered: nothing was held
    assert time.monotonic() - t0 < 5
    assert codes == [grpc.StatusCode.PERMISSION_DENIED] * 20
    assert all(error_name(c) == "PolicyViolation" for c in calls)
    assert srv.admission.open_calls() == 0 and not srv.servicer.pumps
    stranger.close()
    srv.stop(0)
    refused = records(srv, "refused:unlisted_bank", "stranger")
    assert 1 <= len(refused) <= 5 and events(refused) == 20
    assert all(r["session"] == "" and r["enterprises"] == 0 for r in refused)
    assert refused[0]["detail"].startswith("PolicyViolation: bank 'stranger' is not served")


# -- (b) idle streams from a listed bank --------------------------------------------------------
def test_idle_streams_of_a_listed_bank_end_at_the_first_message_deadline(start, certs, release):
    before = frame_threads()
    srv = start(first_message_seconds=1, idle_stream_seconds=1, max_calls_per_bank=3)
    ch = channel(srv, certs)
    t0 = time.monotonic()
    calls = [ch._stub.Exchange(idle(release), timeout=60) for _ in range(2)]
    assert wait_until(lambda: srv.admission.open_calls("demo-bank") == 2)
    # a half-sent first message, then silence: the idle deadline inside the stream
    half = ch._stub.Exchange(idle(release, [pb.Frame(data=b"\x08", end_of_message=False)]),
                             timeout=60)
    assert [c.code() for c in calls] == [grpc.StatusCode.DEADLINE_EXCEEDED] * 2
    assert half.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - t0 < 4
    assert error_name(calls[0]) == "PeerUnavailable" and "within 1 s" in calls[0].details()
    # the workers and the helper threads are free again
    assert wait_until(lambda: srv.admission.open_calls() == 0 and not srv.servicer.pumps)
    assert wait_until(lambda: frame_threads() <= before)
    assert ch.call(m.Ping()).holder_name == "hostile-test"
    # the bank's channel sees the typed error
    with pytest.raises(PeerUnavailable, match="no message within 1 s"):
        list(ch.exchange(idle(release)))
    ch.close()
    srv.stop(0)
    assert events(records(srv, "refused:first_message_timeout", "demo-bank")) == 3
    assert events(records(srv, "refused:idle_stream_timeout", "demo-bank")) == 1


class Sink:
    """A holder that works 1.5 s on the first message, then reads the rest of the stream."""

    def __init__(self):
        from fedcredit.protocol.hooks import MemoryAuditor

        self.policy = test_policy(allowed_banks=LISTED)
        self.auditor = MemoryAuditor()
        self.read = 0

    def handle(self, caller, requests):
        next(requests)
        time.sleep(1.5)  # computing: the holder is not waiting, so no deadline runs
        for _ in requests:
            self.read += 1
        yield m.Pong(holder_name="sink", library_version="0")


def test_silence_inside_a_stream_counts_only_while_the_holder_waits(certs, release):
    sink = Sink()
    srv = HolderServer(sink, "127.0.0.1:0", tls_dir=certs, max_workers=2,
                       first_message_seconds=1, idle_stream_seconds=1).start()
    try:
        ping = pb.Frame(data=serde.encode(m.Ping()), end_of_message=True)

        def frames():
            yield ping
            time.sleep(0.2)
            yield ping  # queued while the holder computes
            release.wait()

        with channel(srv, certs) as ch:
            t0 = time.monotonic()
            err = exchange(ch, frames())
            took = time.monotonic() - t0
        assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED and "no frame within 1 s" \
            in err.details()
        assert sink.read == 1 and 2.3 < took < 5
        assert wait_until(lambda: not srv.servicer.pumps and srv.admission.open_calls() == 0)
    finally:
        srv.stop(0)


def test_health_watches_are_capped_and_check_still_answers(start, certs):
    srv = start()
    creds = tls.channel_credentials(certs, bank_name="stranger")
    with grpc.secure_channel(srv.address, creds,
                             options=tls.channel_options(srv.address)) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        req = health_pb2.HealthCheckRequest(service="")
        watches = [stub.Watch(req, timeout=30) for _ in range(MAX_HEALTH_WATCHES)]
        for w in watches:
            assert next(w).status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as info:
            next(stub.Watch(req, timeout=5))
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert stub.Check(req, timeout=5).status == health_pb2.HealthCheckResponse.SERVING
        for w in watches:
            w.cancel()
        assert wait_until(lambda: srv.health._watches == 0)
        assert next(stub.Watch(req, timeout=5)).status == health_pb2.HealthCheckResponse.SERVING


# -- (c) concurrent calls per bank and in all ---------------------------------------------------
def test_calls_per_bank_and_in_all_are_limited(start, certs, release):
    srv = start(max_workers=3, max_calls_per_bank=2)
    demo, second = channel(srv, certs), channel(srv, certs, bank="second-bank")
    held = [demo._stub.Exchange(idle(release), timeout=60) for _ in range(2)]
    assert wait_until(lambda: srv.admission.open_calls("demo-bank") == 2)
    t0 = time.monotonic()
    err = exchange(demo, idle(release))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and error_name(err) == "ResourceLimit"
    assert "calls open" in err.details() and time.monotonic() - t0 < 2
    # another bank still gets the third worker ...
    assert second.call(m.Ping()).holder_name == "hostile-test"
    held.append(second._stub.Exchange(idle(release), timeout=60))
    assert wait_until(lambda: srv.admission.open_calls() == 3)
    # ... and once every Exchange worker is held, refusals and health still answer
    err = exchange(second, [])
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "maximum of 3" in err.details()
    assert health_status(srv, certs) == health_pb2.HealthCheckResponse.SERVING
    for c in held:  # a bank that hangs up frees its slots
        c.cancel()
    assert wait_until(lambda: srv.admission.open_calls() == 0 and not srv.servicer.pumps)
    assert demo.call(m.Ping()).holder_name == "hostile-test"
    demo.close(), second.close()
    srv.stop(0)
    assert events(records(srv, "refused:bank_call_limit", "demo-bank")) == 1
    assert events(records(srv, "refused:server_busy", "second-bank")) == 1


# -- (d) bad first frames: typed statuses, audited ---------------------------------------------
def test_bad_first_messages_are_refused_with_a_typed_status_and_audited(start, certs,
                                                                        monkeypatch):
    monkeypatch.setattr(serde, "from_frames",
                        functools.partial(serde.from_frames, limit=2 << 20))
    srv = start()
    ch = channel(srv, certs)
    secret = b"PAYLOAD-SECRET-1234"
    version = pb.Envelope(protocol_version=m.PROTOCOL_VERSION + 7, ping=pb.Ping())
    empty = pb.Envelope(protocol_version=m.PROTOCOL_VERSION)
    cases = [
        ([pb.Frame(data=b"\xff\x00" + secret, end_of_message=True)],
         grpc.StatusCode.INVALID_ARGUMENT, "InvalidInput", "invalid_envelope"),
        ([pb.Frame(data=version.SerializeToString(), end_of_message=True)],
         grpc.StatusCode.FAILED_PRECONDITION, "ProtocolError", "protocol_version"),
        ([pb.Frame(data=empty.SerializeToString(), end_of_message=True)],
         grpc.StatusCode.INVALID_ARGUMENT, "InvalidInput", "invalid_envelope"),
        ([pb.Frame(data=b"\x08" + secret, end_of_message=False)],
         grpc.StatusCode.FAILED_PRECONDITION, "ProtocolError", "truncated_message"),
        ([pb.Frame(data=b"\x00" * (1 << 20), end_of_message=False)] * 3,
         grpc.StatusCode.RESOURCE_EXHAUSTED, "ResourceLimit", "oversized_message"),
        ([], grpc.StatusCode.FAILED_PRECONDITION, "ProtocolError", "empty_stream"),
    ]
    for frames, code, name, _ in cases:
        err = exchange(ch, frames)
        assert (err.code(), error_name(err)) == (code, name)
    assert ch.call(m.Ping()).holder_name == "hostile-test"  # the server is unharmed
    ch.close()
    srv.stop(0)  # flushes the aggregated tail
    refused = [r for r in records(srv, bank="demo-bank") if r["operation"].startswith("refused:")]
    want = Counter(f"refused:{reason}" for *_, reason in cases)
    got: Counter = Counter()
    for r in refused:
        got[r["operation"]] += events([r])
    assert got == want
    details = " ".join(r["detail"] for r in refused)
    assert "carries no message" in details and "protocol version" in details
    assert "PAYLOAD" not in details and "SECRET" not in details


# -- (e) a flood of refused Pings writes a bounded number of records ---------------------------
def test_a_flood_of_refused_pings_is_audited_in_aggregate(start, certs):
    srv = start()
    refused = Counter()
    lock = threading.Lock()

    def flood():
        with channel(srv, certs, bank="stranger") as ch:
            end = time.monotonic() + 2
            n = 0
            while time.monotonic() < end:
                with pytest.raises(PolicyViolation):
                    ch.call(m.Ping())
                n += 1
        with lock:
            refused["n"] += n

    threads = [threading.Thread(target=flood) for _ in range(4)]
    for t in threads:
        t.start()
    with channel(srv, certs) as ch:  # answered Pings are aggregated too
        answered = 0
        end = time.monotonic() + 2
        while time.monotonic() < end:
            ch.call(m.Ping())
            answered += 1
    for t in threads:
        t.join()
    srv.stop(0)
    recs = records(srv, "refused:unlisted_bank", "stranger")
    assert refused["n"] > 50, refused
    assert len(recs) <= 10 and events(recs) == refused["n"]
    pings = records(srv, "ping", "demo-bank")
    assert len(pings) <= 10 and events(pings) == answered
    assert len(srv.passive.auditor.records) <= 20


def test_the_refusal_limiter_never_loses_a_count():
    class Clock:
        t = 0.0

        def __call__(self):
            return self.t

    from fedcredit.protocol.hooks import MemoryAuditor

    aud, clock = MemoryAuditor(), Clock()
    lim = RefusalAudit(aud, window=1.0, clock=clock)
    for i in range(100):  # 10 per second for 10 s, two banks
        clock.t = i * 0.1
        lim.note("a", "refused:x", "E: no")
        if i % 2:
            lim.note("b", "refused:x", "E: no")
    clock.t = 20.0
    lim.note("c", "refused:y", "E: other")  # a later refusal writes the quiet keys' tails
    assert events([r for r in aud.records if r["bank"] == "a"]) == 100
    assert events([r for r in aud.records if r["bank"] == "b"]) == 50
    lim.note("c", "refused:y", "E: other")
    lim.flush()
    assert events([r for r in aud.records if r["bank"] == "c"]) == 2
    assert len(aud.records) <= 2 * 11 + 2
    assert all(r["operation"] in ("refused:x", "refused:y") for r in aud.records)
