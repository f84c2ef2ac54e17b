"""The operator's liveness endpoint (`ktune operator --liveness URL`), served from the process's start to its end.

kopf serves its own liveness endpoint only once its startup handlers ran, and with `--leader-election` kopf starts
only after this replica holds the Lease: a standby would not answer for as long as it waits, and the kubelet would
restart it every `failureThreshold x periodSeconds`. So ktune serves liveness itself, from a thread, and what
"alive" means follows the process's phase:

- waiting for the Lease: the election made an attempt within the last two lease durations (a standby whose
  election loop hangs would never take over: restarting it is right);
- starting (after taking the Lease, or at once without election): alive for up to `STARTUP_GRACE_SECONDS`;
- kopf running: its event loop runs a callback within `LOOP_TIMEOUT_SECONDS`, which is what kopf's own endpoint
  proves (it answers from that loop; ktune registers no kopf probe handlers).

Readiness is another matter: the chart's readiness probe is the metrics endpoint, which a standby serves too (it
starts before the election). A standby is ready as well as live, as with controller-runtime's managers: readiness
does not mean leadership. Nothing needs to avoid a standby: the metrics Service is only scraped per pod, and a
standby exports no job series (its counters stay at zero), so sums over pods are unchanged.
"""

import json
import threading
import time
import urllib.parse
from asyncio import AbstractEventLoop, get_running_loop
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

import kopf

STARTUP_GRACE_SECONDS = 120.0
LOOP_TIMEOUT_SECONDS = 5.0
Clock = Callable[[], float]


class Election(Protocol):
    """What liveness reads of `ktune.operator.election.LeaseElection`."""

    lease_seconds: float
    attempted_at: float


class Liveness:
    """Whether this process is alive, by phase (see the module's docstring); `serve` answers probes over HTTP."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._phase = "starting"
        self._check: Callable[[], str | None] = self._within_grace(clock())

    def waiting_for(self, election: Election) -> None:
        def check() -> str | None:
            quiet = self._clock() - election.attempted_at
            if quiet > 2 * election.lease_seconds:
                return f"the Lease election made no attempt for {quiet:.0f}s"
            return None

        self._set("waiting for the Lease", check)

    def starting(self) -> None:
        self._set("starting", self._within_grace(self._clock()))

    def running(self, loop: AbstractEventLoop) -> None:
        def check() -> str | None:
            answered = threading.Event()
            try:
                loop.call_soon_threadsafe(answered.set)
            except RuntimeError:  # closed: kopf has stopped
                return "kopf's event loop has stopped"
            if not answered.wait(LOOP_TIMEOUT_SECONDS):
                return f"kopf's event loop did not run a callback within {LOOP_TIMEOUT_SECONDS:.0f}s"
            return None

        self._set("running", check)

    def follow_kopf(self, registry: kopf.OperatorRegistry) -> None:
        """Switch to checking kopf's event loop once kopf starts (its startup handlers run on that loop)."""
        @kopf.on.startup(registry=registry, id="liveness")
        async def kopf_started(**_: Any) -> None:
            self.running(get_running_loop())

    def report(self) -> tuple[bool, dict[str, Any]]:
        """Whether the process is alive, and what the endpoint answers."""
        phase, problem = self._phase, self._check()
        return problem is None, {"phase": phase, "alive": problem is None, **({"problem": problem} if problem else {})}

    def serve(self, endpoint: str) -> ThreadingHTTPServer:
        """Answer GET `endpoint`'s path with 200 while alive and 503 otherwise, from a daemon thread."""
        parts = urllib.parse.urlsplit(endpoint)
        if parts.scheme != "http":
            raise ValueError(f"--liveness {endpoint}: only http:// URLs are served, e.g. http://0.0.0.0:8080/healthz")
        port = 80 if parts.port is None else parts.port
        server = ThreadingHTTPServer((parts.hostname or "localhost", port),
                                     _handler(self, parts.path or "/"))
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name="liveness", daemon=True).start()
        return server

    def _set(self, phase: str, check: Callable[[], str | None]) -> None:
        self._phase, self._check = phase, check

    def _within_grace(self, since: float) -> Callable[[], str | None]:
        def check() -> str | None:
            if self._clock() - since > STARTUP_GRACE_SECONDS:
                return f"still starting after {STARTUP_GRACE_SECONDS:.0f}s"
            return None

        return check


def _handler(liveness: Liveness, path: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if urllib.parse.urlsplit(self.path).path != path:
                self.send_error(404)
                return
            alive, report = liveness.report()
            body = json.dumps(report).encode()
            self.send_response(200 if alive else 503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Silent: a line per probe would bury the operator's log."""

    return Handler
