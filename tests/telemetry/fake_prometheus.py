"""A local HTTP server that answers `/api/v1/query` as Prometheus would, or badly, for fast tests."""

import http.server
import json
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

Series = tuple[dict[str, str], list[tuple[float, str]]]


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    release: threading.Event | None = None
    """Answer only once this is set (the server holds the request meanwhile)."""


@dataclass
class FakePrometheus:
    """Answers with the `queued` answers first, then with `answer`; records every query it was asked."""

    answer: Answer = field(default_factory=Answer)
    queued: list[Answer] = field(default_factory=list)
    asked: list[dict[str, str]] = field(default_factory=list)
    base_url: str = ""

    def answer_json(self, body: object, status: int = 200) -> None:
        self.answer = Answer(status, json.dumps(body).encode())


def matrix(*series: Series) -> dict[str, object]:
    """A successful range-vector answer."""
    return {"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": labels, "values": [[at, value] for at, value in samples]} for labels, samples in series]}}


def step(*samples: tuple[float, str]) -> Series:
    return {"__name__": "ktune_trial_step"}, list(samples)


def metric(name: str, *samples: tuple[float, str]) -> Series:
    return {"__name__": "ktune_trial_metric", "metric": name}, list(samples)


@contextmanager
def serving() -> Iterator[FakePrometheus]:
    fake = FakePrometheus()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            fake.asked.append({"path": url.path, **dict(urllib.parse.parse_qsl(url.query))})
            answer = fake.queued.pop(0) if fake.queued else fake.answer
            if answer.release is not None:
                answer.release.wait(60)
            try:
                self.send_response(answer.status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(answer.body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the reader gave up first (a timeout, an answer too large): what the test wanted

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    fake.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield fake
    finally:
        for answer in [fake.answer, *fake.queued]:
            if answer.release is not None:
                answer.release.set()
        server.shutdown()
        server.server_close()
