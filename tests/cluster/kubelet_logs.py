"""The node agent's container logs, as a kubelet keeps and serves them, so that `kubectl logs` and the API's
`pods/log` work against the test cluster through the real kube-apiserver, which proxies them to the node.

- `spawn_logged` starts a pod's process with its output through a pipe: each line goes to `container.log` as
  written (what tests read) and, with the time it arrived (RFC 3339, nanoseconds, UTC, as the kubelet's CRI log
  files), to `container.timestamps.log`.
- `ContainerLogServer` serves the kubelet's `GET /containerLogs/{namespace}/{pod}/{container}` over HTTPS on
  127.0.0.1 (the Node's InternalIP) and the port the Node advertises in `status.daemonEndpoints.kubeletEndpoint`,
  honouring the query the API server passes on: `timestamps`, `sinceTime`, `tailLines` and `limitBytes`
  (`follow` is refused). The API server runs without `--kubelet-certificate-authority` and without a kubelet client
  certificate, so the serving certificate is a self-signed one and no client certificate is asked for.
"""

import datetime
import http.server
import logging
import ssl
import subprocess
import threading
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from tests.cluster.processes import _die_with_parent

log = logging.getLogger("node-agent")

RAW_LOG = "container.log"
STAMPED_LOG = "container.timestamps.log"
DRAIN_SECONDS = 5.0
"""How long an exited process's output may take to reach the files (a child that keeps the pipe open is not
waited for longer)."""


def stamp() -> str:
    """Now as the kubelet writes log timestamps: RFC 3339 with nanoseconds, UTC."""
    now = datetime.datetime.now(datetime.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond:06d}000Z"


def spawn_logged(argv: Sequence[str], pod_dir: Path, env: Mapping[str, str],
                 cwd: Path) -> tuple[subprocess.Popen, Callable[[], None]]:
    """Start `argv` as `tests.cluster.processes.spawn` does (own session, dies with the agent), its stdout and stderr
    copied line by line to the pod's two log files. Also returns `drained()`, which returns once the process's
    output is all written (at most DRAIN_SECONDS after the process ended)."""
    process = subprocess.Popen(
        [str(a) for a in argv], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env=dict(env), cwd=cwd, start_new_session=True, preexec_fn=_die_with_parent,
    )
    copier = threading.Thread(target=_copy_lines, args=(process, pod_dir), daemon=True)
    copier.start()
    return process, lambda: copier.join(DRAIN_SECONDS)


def _copy_lines(process: subprocess.Popen, pod_dir: Path) -> None:
    assert process.stdout is not None
    with open(pod_dir / RAW_LOG, "ab") as raw, open(pod_dir / STAMPED_LOG, "ab") as stamped:
        for line in iter(process.stdout.readline, b""):
            raw.write(line)
            raw.flush()
            stamped.write(stamp().encode() + b" " + (line if line.endswith(b"\n") else line + b"\n"))
            stamped.flush()
    process.stdout.close()


def _seconds_key(timestamp: str) -> str:
    """The whole-second part of an RFC 3339 UTC timestamp, comparable as text."""
    return timestamp[:19]


def select_lines(stamped: bytes, query: Mapping[str, str]) -> bytes:
    """The log the kubelet would answer with for this query (`follow` aside), from `container.timestamps.log`."""
    lines = stamped.splitlines(keepends=True)
    since = query.get("sinceTime")
    if since:
        parsed = datetime.datetime.fromisoformat(since.replace("Z", "+00:00")).astimezone(datetime.UTC)
        floor = parsed.strftime("%Y-%m-%dT%H:%M:%S")
        lines = [line for line in lines if _seconds_key(line.decode(errors="replace")) >= floor]
    if query.get("tailLines"):
        tail = int(query["tailLines"])
        lines = lines[-tail:] if tail > 0 else []
    if query.get("timestamps") != "true":
        lines = [line.split(b" ", 1)[1] if b" " in line else line for line in lines]
    body = b"".join(lines)
    if query.get("limitBytes"):
        body = body[: int(query["limitBytes"])]
    return body


class ContainerLogServer:
    """The kubelet's containerLogs endpoint for the pods of one node agent. `locate(namespace, pod, container)` is
    the directory of that pod's files, or None when the node has no such container."""

    def __init__(self, workdir: Path, locate: Callable[[str, str, str], Path | None]) -> None:
        self.locate = locate
        cert, key = workdir / "kubelet.crt", workdir / "kubelet.key"
        if not cert.exists():
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "3", "-subj", "/CN=node-agent",
                            "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.httpd.daemon_threads = True
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]

    def start(self) -> None:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def answer(self, path: str) -> tuple[int, bytes]:
        url = urllib.parse.urlsplit(path)
        parts = url.path.strip("/").split("/")
        if len(parts) != 4 or parts[0] != "containerLogs":
            return 404, b"not found: only /containerLogs/{namespace}/{pod}/{container} is served\n"
        query = dict(urllib.parse.parse_qsl(url.query))
        if query.get("follow") == "true":
            return 400, b"follow is not supported by the test node agent: poll with sinceTime\n"
        pod_dir = self.locate(parts[1], parts[2], parts[3])
        if pod_dir is None:
            return 404, f"container {parts[3]} of pod {parts[1]}/{parts[2]} is not on this node\n".encode()
        try:
            stamped = (pod_dir / STAMPED_LOG).read_bytes()
        except FileNotFoundError:
            stamped = b""
        try:
            return 200, select_lines(stamped, query)
        except ValueError as error:
            return 400, f"bad query: {error}\n".encode()


def _handler(server: ContainerLogServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = server.answer(self.path)
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("containerLogs: " + format, *args)

    return Handler
