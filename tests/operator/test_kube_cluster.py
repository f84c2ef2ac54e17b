"""The operator's API client on answers a test server cannot easily give: a 429 with its Retry-After."""

from typing import Any

import pytest

from ktune.operator.cluster import ApiError, KubeCluster, TooManyRequests


class Answer:
    def __init__(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.status, self.body, self.headers = status, body, headers

    def read(self) -> bytes:
        return self.body

    def getheader(self, name: str) -> str | None:
        return self.headers.get(name)


class OneAnswerClient:
    """Stands in for kubernetes.client.ApiClient: every call gets the same answer."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer

    def param_serialize(self, method: str, path: str, **_: Any) -> tuple[str, str, dict[str, str], Any, None]:
        return method, path, {}, None, None

    def call_api(self, method: str, url: str, headers: dict[str, str], body: Any, **_: Any) -> Answer:
        return self.answer


@pytest.mark.parametrize("header, seconds", [("7", 7.0), (None, 1.0), ("Wed, 21 Oct 2015 07:28:00 GMT", 1.0)])
def test_a_429_says_how_long_the_api_server_asked_to_wait(header: str | None, seconds: float):
    headers = {"Retry-After": header} if header is not None else {}
    api = KubeCluster(OneAnswerClient(Answer(429, b'{"message": "too many requests"}', headers)))
    with pytest.raises(TooManyRequests) as refused:
        api.list_trials("ns", "job")
    assert (refused.value.status, refused.value.retry_after) == (429, seconds)
    assert "too many requests" in str(refused.value)


def test_other_refusals_stay_plain_api_errors():
    api = KubeCluster(OneAnswerClient(Answer(503, b'{"message": "etcd is down"}', {})))
    with pytest.raises(ApiError) as refused:
        api.list_trials("ns", "job")
    assert refused.value.status == 503 and not isinstance(refused.value, TooManyRequests)
