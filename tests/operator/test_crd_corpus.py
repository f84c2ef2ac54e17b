"""The CRD and ktune.spec agree on the shared TuningJob corpus (tests/fixtures/tuningjobs).

Every valid fixture is accepted by the API server. Every invalid one is either refused by the server
(with a message) or accepted and then marked `Invalid` by the operator with ktune.spec's problem; which
of the two is pinned below, so a change to the CRD or to the spec that moves a rule shows up here.
"""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ktune.spec import kube_yaml
from tests.cluster.controlplane import Cluster
from tests.operator.operator_harness import OperatorProcess, condition, get, wait_for

pytestmark = pytest.mark.cluster

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "tuningjobs"
# Rules the API server cannot check (Optuna's option checks, whole steps, contents of the pod template):
# these jobs are stored and then marked Invalid by the operator.
OPERATOR_ONLY = {
    "20-step-not-whole.yaml",
    "26-duplicate-choices.yaml",
    "27-null-choice.yaml",
    "31-choices-on-float.yaml",
    "35-unknown-sampler-option.yaml",
    "36-seed-in-sampler-options.yaml",
    "37-sampler-option-wrong-type.yaml",
    "40-grid-too-large.yaml",
    "43-percentile-without-percentile.yaml",
    "44-pruner-option-refused-by-optuna.yaml",
    "45-pruner-none-with-options.yaml",
    "57-no-containers.yaml",
    "58-container-without-command-or-image.yaml",
    "59-numeric-container-args.yaml",
    "66-log-filter-without-two-groups.yaml",
    "85-pytorchjob-without-pytorch-container.yaml",
    "86-mpijob-without-launcher.yaml",
    "88-pytorchjob-two-masters.yaml",
}


def fixture_in(path: Path, namespace: str) -> tuple[str, str]:
    """The fixture as YAML placed in `namespace`, and its expected problem substring ('' for valid ones)."""
    text = path.read_text()
    first = text.splitlines()[0]
    expected = first.removeprefix("# error:").strip() if first.startswith("# error:") else ""
    document = kube_yaml.load(text)
    if isinstance(document.get("metadata"), dict):
        document["metadata"]["namespace"] = namespace
    return kube_yaml.dump(document), expected


def dry_run(cluster: Cluster, manifest: str, namespace: str):
    return cluster.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", input=manifest, check=False)


@pytest.mark.parametrize("path", sorted((CORPUS / "valid").glob("*.yaml")), ids=lambda p: p.name)
def test_every_valid_fixture_is_accepted_by_the_api_server(cluster: Cluster, operator_kubeconfig: Path,
                                                          namespace: str, path: Path):
    manifest, _ = fixture_in(path, namespace)
    result = dry_run(cluster, manifest, namespace)
    assert result.returncode == 0, result.stderr


def test_every_invalid_fixture_is_refused_by_the_server_or_marked_invalid_by_the_operator(
    cluster: Cluster, namespace: str, operator: OperatorProcess
):
    paths = sorted((CORPUS / "invalid").glob("*.yaml"))
    fixtures = [fixture_in(path, namespace) for path in paths]
    with ThreadPoolExecutor(max_workers=6) as pool:  # kubectl spends its time waiting on the server
        results = list(pool.map(lambda fixture: dry_run(cluster, fixture[0], namespace), fixtures))
    refused, stored = {}, {}
    for path, (manifest, expected), result in zip(paths, fixtures, results, strict=True):
        if result.returncode != 0:
            assert "invalid" in result.stderr.lower() or "error" in result.stderr.lower(), result.stderr
            refused[path.name] = result.stderr.strip()
        else:
            document = kube_yaml.load(manifest)
            document["metadata"]["name"] = f"invalid-{path.name[:2]}"  # the fixtures share one name
            stored[path.name] = (document, expected)
    assert set(stored) == OPERATOR_ONLY, f"server refused: {sorted(refused)}"
    cluster.kubectl("apply", "-f", "-", input="---\n".join(kube_yaml.dump(document) for document, _ in stored.values()))

    def all_marked_invalid() -> dict[str, dict] | None:
        jobs = {job["metadata"]["name"]: job for job in get(cluster, "tuningjobs", namespace)["items"]}
        conditions = {name: condition(job, "Invalid") for name, job in jobs.items()}
        if len(jobs) == len(stored) and all(c and c["status"] == "True" for c in conditions.values()):
            return {name: {"condition": conditions[name], "phase": job["status"]["phase"]}
                    for name, job in jobs.items()}
        return None

    marked = wait_for(all_marked_invalid, 90, "every stored invalid job to be marked Invalid", operator)
    for name, (document, expected) in stored.items():
        verdict = marked[document["metadata"]["name"]]
        assert expected in verdict["condition"]["message"], f"{name}: {verdict['condition']['message']}"
        assert verdict["phase"] == "Failed"
    assert get(cluster, "trials", namespace)["items"] == []
