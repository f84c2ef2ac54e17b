"""The operator's liveness endpoint by phase (ktune.operator.liveness): a standby waiting for the Lease is alive
while its election keeps trying, a starting operator for a grace period, a running one while kopf's event loop
runs callbacks; answered over HTTP as the kubelet probes it."""

import asyncio
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from ktune.operator.liveness import STARTUP_GRACE_SECONDS, Liveness


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Election:
    lease_seconds: float
    attempted_at: float


def test_a_standby_is_alive_while_its_election_attempts_and_not_once_it_stops_trying():
    clock = FakeClock()
    liveness = Liveness(clock)
    election = Election(lease_seconds=15.0, attempted_at=clock.now)
    liveness.waiting_for(election)
    clock.now += 29.0
    assert liveness.report() == (True, {"phase": "waiting for the Lease", "alive": True})
    election.attempted_at = clock.now
    clock.now += 30.0
    assert liveness.report()[0]
    clock.now += 1.0
    alive, report = liveness.report()
    assert not alive and report["problem"] == "the Lease election made no attempt for 31s"


def test_starting_is_alive_for_the_grace_period_only():
    clock = FakeClock()
    liveness = Liveness(clock)
    clock.now += STARTUP_GRACE_SECONDS
    assert liveness.report() == (True, {"phase": "starting", "alive": True})
    liveness.starting()  # the grace counts again from the Lease's acquisition
    clock.now += STARTUP_GRACE_SECONDS + 1
    assert liveness.report()[1] == {"phase": "starting", "alive": False,
                                   "problem": f"still starting after {STARTUP_GRACE_SECONDS:.0f}s"}


def test_running_is_alive_while_the_event_loop_runs_callbacks_and_not_after_it_closed():
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    liveness = Liveness()
    liveness.running(loop)
    assert liveness.report() == (True, {"phase": "running", "alive": True})
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()
    assert liveness.report()[1]["problem"] == "kopf's event loop has stopped"


@pytest.fixture
def served() -> Iterator[tuple[Liveness, FakeClock, str]]:
    clock = FakeClock()
    liveness = Liveness(clock)
    server = liveness.serve("http://127.0.0.1:0/healthz")
    yield liveness, clock, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}") if error.code == 503 else {}


def test_the_endpoint_answers_200_while_alive_503_when_not_and_404_on_other_paths(served):
    liveness, clock, base = served
    liveness.waiting_for(Election(lease_seconds=15.0, attempted_at=clock.now))
    assert get(f"{base}/healthz") == (200, {"phase": "waiting for the Lease", "alive": True})
    clock.now += 31.0
    status, report = get(f"{base}/healthz")
    assert status == 503 and not report["alive"]
    assert get(f"{base}/metrics")[0] == 404


def test_only_http_endpoints_are_served():
    with pytest.raises(ValueError, match="only http:// URLs"):
        Liveness().serve("https://0.0.0.0:8080/healthz")
