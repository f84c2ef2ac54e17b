"""A validating admission webhook that SIGKILLs the operator at one exact point: after it created a Trial and
before that Trial's first status write lands (#13 item 5), on the real API server.

Watching for a Trial without a status and killing then is a race the operator often wins: its status write
follows the create within milliseconds. Here the API server itself holds the write: armed, the webhook notes
the next Trial created in the namespace, and when the operator's first status write for that Trial reaches
admission, the webhook kills the operator, waits until it is gone and refuses the write. The Trial is left
exactly as created, which is what a crash between the two calls leaves.

Served over HTTPS from this test process (a self-signed certificate for 127.0.0.1 is the webhook's caBundle);
scoped to one namespace and `failurePolicy: Ignore`, so nothing else on the cluster depends on it.
"""

import base64
import json
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.cluster.controlplane import Cluster
from tests.operator.operator_harness import OperatorProcess, wait_for

DENIED = "ktune test: the operator was SIGKILLed before this first status write of a new Trial"


class StatusWriteKill:
    """The webhook's decisions; `arm(kill)` makes the next new Trial's first status write kill the operator."""

    def __init__(self, journal: Path) -> None:
        self.journal = journal
        """One line per review and per decision, to read after a failed run."""
        self.lock = threading.Lock()
        self.reviews = 0
        """Admission reviews received (dry-run probes included): proof that the webhook is in force."""
        self.kill: Callable[[], None] | None = None
        self.target: str | None = None
        self.killed = threading.Event()
        self.killed_at: list[str] = []
        """The Trials whose first status write was refused, one per kill, in order."""

    def arm(self, kill: Callable[[], None]) -> None:
        with self.lock:
            self.kill, self.target = kill, None
            self.killed.clear()

    def wait_killed(self, timeout: float, operator: OperatorProcess) -> str:
        """The Trial the armed kill happened at (the operator is dead by then)."""
        wait_for(self.killed.is_set, timeout, f"a new Trial's first status write to kill the operator (webhook "
                 f"journal: {self.journal.read_text()[-2000:] if self.journal.exists() else ''})", operator)
        return self.killed_at[-1]

    def note(self, line: str) -> None:
        with self.journal.open("a") as journal:
            journal.write(f"{time.strftime('%H:%M:%S')} {line}\n")

    def review(self, request: dict[str, Any]) -> tuple[bool, str]:
        """Whether to allow this admission request, and the refusal message."""
        with self.lock:
            self.reviews += 1
            if self.kill is None or request.get("dryRun"):
                return True, ""
            name = request["name"] if request.get("name") else request["object"]["metadata"]["name"]
            self.note(f"armed: {request['operation']} {name} {request.get('subResource') or ''}")
            if request["operation"] == "CREATE" and not request.get("subResource") and self.target is None:
                self.target = name
                return True, ""
            first_status = not (request.get("oldObject") or {}).get("status")
            if request.get("subResource") != "status" or name != self.target or not first_status:
                return True, ""
            kill, self.kill = self.kill, None
        self.note(f"killing the operator at {name}'s first status write")
        kill()  # outside the lock: SIGKILL and wait for the process to be gone, then refuse the write
        self.note("killed")
        self.killed_at.append(name)
        self.killed.set()
        return False, DENIED


def _handler(decider: StatusWriteKill) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            request = review["request"]
            allowed, message = decider.review(request)
            response: dict[str, Any] = {"uid": request["uid"], "allowed": allowed}
            if not allowed:
                response["status"] = {"code": 409, "message": message}
            body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                               "response": response}).encode()
            try:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                # After a kill the API server may have dropped the call already: the operator that made the
                # request is gone, and its write is abandoned with it (the test checks the Trial kept no status).
                pass

        def log_message(self, format: str, *args: Any) -> None:
            return None

    return Handler


def _self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "webhook.crt", directory / "webhook.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


def _configuration(name: str, namespace: str, port: int, ca_bundle: bytes) -> dict[str, Any]:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [{
            "name": "kill-operator.test.ktune.dev",
            "clientConfig": {"url": f"https://127.0.0.1:{port}/", "caBundle": base64.b64encode(ca_bundle).decode()},
            "rules": [{"apiGroups": ["ktune.dev"], "apiVersions": ["v1alpha1"], "operations": ["CREATE", "UPDATE"],
                       "resources": ["trials", "trials/status"], "scope": "Namespaced"}],
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            "failurePolicy": "Ignore",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 15,
        }],
    }


def _probe_trial(namespace: str) -> dict[str, Any]:
    return {"apiVersion": "ktune.dev/v1alpha1", "kind": "Trial",
            "metadata": {"name": "webhook-probe-0", "namespace": namespace},
            "spec": {"tuningJob": "webhook-probe", "number": 0, "params": {}}}


@contextmanager
def status_write_kill(cluster: Cluster, namespace: str, workdir: Path) -> Iterator[StatusWriteKill]:
    """The webhook registered for `namespace` and in force (a dry-run Trial create reached it); removed after."""
    decider = StatusWriteKill(workdir / "webhook.log")
    cert, key = _self_signed(workdir)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(decider))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    name = f"ktune-test-kill-{namespace}"
    cluster.kubectl("apply", "-f", "-", input=json.dumps(
        _configuration(name, namespace, server.server_address[1], cert.read_bytes())))
    try:
        def in_force() -> bool:
            cluster.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(_probe_trial(namespace)))
            return decider.reviews > 0

        wait_for(in_force, 60, "the API server to call the kill webhook")
        yield decider
    finally:
        cluster.kubectl("delete", "validatingwebhookconfiguration", name, "--ignore-not-found")
        server.shutdown()
        server.server_close()
