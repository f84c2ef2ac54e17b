"""`ktune run` with a PyTorchJob trial: the Master as rank 0 and each Worker as a further rank, every one a local
process from its own replica template, with the contract's variables and what the training-operator and torchrun
give; rank 0's result is the trial's. The kinds a local process cannot stand in for are refused naming the kind."""

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ktune.algorithms import load_tuningjob
from ktune.cli.main import EXIT_BAD_INPUT, main
from ktune.engine import TrialState
from ktune.local.processes import LocalTemplateError
from tests.cluster.ddp_logs import DDP_ENV, ddp_settings

from .jobs import run_locally, stand_in_manifest

ROOT = Path(__file__).resolve().parents[2]
KTUNE = [sys.executable, "-m", "ktune.cli"]

# Every rank writes what it was given to ranks/<RANK>.json, then the ranks meet at MASTER_ADDR:MASTER_PORT as
# torchrun workers do; rank 0 writes its result once it heard every other rank, the others theirs once heard.
RANK_TRAINER = '''
import json, os, socket, sys, time
world, rank = int(os.environ["WORLD_SIZE"]), int(os.environ["RANK"])
seen = {name: os.environ.get(name) for name in ("REPLICA", "KTUNE_PARAM_X", "KTUNE_TRIAL_NUMBER", "PET_NODE_RANK",
                                                "PET_NNODES", "PET_MASTER_PORT", "MASTER_PORT", "LOCAL_RANK")}
out = os.path.join(os.environ["RANKS_DIR"], os.environ["KTUNE_TRIAL_NUMBER"])
os.makedirs(out, exist_ok=True)
open(os.path.join(out, f"{rank}.json"), "w").write(json.dumps(seen))
address = (os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]))
if rank == 0:
    server = socket.create_server(address)
    server.settimeout(30)
    heard = []
    for _ in range(world - 1):
        connection, _ = server.accept()
        heard.append(int(connection.recv(16).decode()))
        connection.close()
    result = {"score": 1.0, "rank": 0, "world_size": world, "peer_ranks": sum(heard)}
    open(os.environ["KTUNE_RESULT_PATH"], "w").write(json.dumps(result))
else:
    deadline = time.time() + 30
    while True:
        try:
            with socket.create_connection(address, timeout=1) as connection:
                connection.sendall(str(rank).encode())
            break
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.05)
    open(os.environ["KTUNE_RESULT_PATH"], "w").write(json.dumps({"score": 0.5, "rank": rank}))
'''


def pytorchjob(manifest: dict[str, Any], workers: int, *, container: str = "pytorch") -> dict[str, Any]:
    """`manifest` with its pod template as a PyTorchJob's Master (1) and Worker (`workers`) replicas, each
    container told its replica in REPLICA."""
    manifest = copy.deepcopy(manifest)
    template = manifest["spec"]["trial"].pop("template")
    replicas = {}
    for name, count in (("Master", 1), ("Worker", workers)):
        replica_template = copy.deepcopy(template)
        trainer = replica_template["spec"]["containers"][0]
        trainer["name"] = container
        trainer["env"] = [*trainer.get("env", []), {"name": "REPLICA", "value": name.lower()}]
        replicas[name] = {"replicas": count, "template": replica_template}
    manifest["spec"]["trial"]["resource"] = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
                                             "spec": {"pytorchReplicaSpecs": replicas}}
    return manifest


def rank_job(tmp_path: Path, workers: int) -> dict[str, Any]:
    script = tmp_path / "rank_trainer.py"
    script.write_text(RANK_TRAINER)
    manifest = stand_in_manifest(max_trials=2, parallelism=2)
    container = manifest["spec"]["trial"]["template"]["spec"]["containers"][0]
    container.update(command=[sys.executable, str(script)], args=[],
                     env=[{"name": "RANKS_DIR", "value": str(tmp_path / "ranks")}])
    return pytorchjob(manifest, workers)


def test_the_master_is_rank_0_each_worker_a_further_rank_and_rank_0s_result_is_the_trials(tmp_path: Path):
    outcome = run_locally(load_tuningjob(rank_job(tmp_path, workers=2)), tmp_path / "run")
    assert [record.state for record in outcome.records] == [TrialState.SUCCEEDED] * 2
    for record in outcome.records:
        assert (record.metrics["world_size"], record.metrics["peer_ranks"]) == (3, 1 + 2)
        seen = {rank: json.loads((tmp_path / "ranks" / str(record.number) / f"{rank}.json").read_text())
                for rank in range(3)}
        assert [seen[rank]["REPLICA"] for rank in range(3)] == ["master", "worker", "worker"], \
            "each rank runs its own replica's template"
        assert {seen[rank]["KTUNE_PARAM_X"] for rank in range(3)} == {str(record.params["x"])}, \
            "the contract's variables reach every container of every replica"
        assert [(s["PET_NODE_RANK"], s["LOCAL_RANK"], s["PET_NNODES"]) for s in seen.values()] == [
            ("0", "0", "3"), ("1", "1", "3"), ("2", "2", "3")]
        assert seen[0]["PET_MASTER_PORT"] == seen[0]["MASTER_PORT"] == seen[2]["MASTER_PORT"]
    logs = sorted(path.name for path in (tmp_path / "run" / "trials").glob("*/log*.txt"))
    assert logs == ["log-1.txt", "log-1.txt", "log-2.txt", "log-2.txt", "log.txt", "log.txt"]


def test_the_pod_primary_pod_selects_is_the_metrics_process_as_on_a_cluster(tmp_path: Path):
    manifest = rank_job(tmp_path, workers=2)
    manifest["spec"]["budget"] = {"maxTrials": 1, "parallelism": 1}
    manifest["spec"]["trial"]["primaryPod"] = {"matchLabels": {"training.kubeflow.org/replica-type": "worker",
                                                               "training.kubeflow.org/replica-index": "1"}}
    record = run_locally(load_tuningjob(manifest), tmp_path / "run").records[0]
    assert record.state == TrialState.SUCCEEDED, (record.reason, record.message)
    assert (record.metrics["rank"], record.values) == (2.0, [0.5]), "Worker 1 is rank 2"


def test_a_primary_pod_that_selects_no_pod_is_refused_before_anything_runs(tmp_path: Path):
    manifest = rank_job(tmp_path, workers=1)
    manifest["spec"]["trial"]["primaryPod"] = {"matchLabels": {"training.kubeflow.org/replica-type": "chief"}}
    with pytest.raises(LocalTemplateError) as refused:
        run_locally(load_tuningjob(manifest), tmp_path / "run")
    assert refused.value.problems[0].startswith(
        "spec.trial.primaryPod: training.kubeflow.org/replica-type=chief selects none of the trial's 2 pods (rank 0's "
        "labels: "), refused.value.problems
    assert not (tmp_path / "run").exists()


def test_a_real_ktune_run_of_the_example_trains_one_ddp_group_per_trial(tmp_path: Path):
    """examples/pytorchjob.yaml as written, reduced to one small trial: the real trainer (tiny-bert) on gloo."""
    job = yaml.safe_load((ROOT / "examples" / "pytorchjob.yaml").read_text())
    job["spec"]["budget"] = {"maxTrials": 1, "parallelism": 1}
    for replica in job["spec"]["trial"]["resource"]["spec"]["pytorchReplicaSpecs"].values():
        container = replica["template"]["spec"]["containers"][0]
        container["args"] = [arg.replace("queries=40", "queries=16").replace("--epochs=2", "--epochs=1")
                             for arg in container["args"]]
        container["env"] = [*container["env"], *DDP_ENV]
    path = tmp_path / "pytorchjob.yaml"
    path.write_text(yaml.safe_dump(job))
    run = subprocess.run([*KTUNE, "run", str(path), "--output", str(tmp_path / "run")], capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    trial = tmp_path / "run" / "trials" / "0000"
    ranks = [ddp_settings((trial / name).read_text()) for name in ("log.txt", "log-1.txt")]
    assert [(r.get("rank"), r.get("world_size"), r.get("backend_name")) for r in ranks] == [
        ("0", "2", "gloo"), ("1", "2", "gloo")], "both ranks joined one process group of 2"
    result = json.loads((trial / "result.json").read_text())
    assert 0.0 <= result["ndcg_at_10"] <= 1.0
    assert not (trial / "result-1.json").exists(), "only rank 0 writes the result"
    assert "1 succeeded" in run.stdout, run.stdout


@pytest.mark.parametrize("kind, key, replicas", [
    ("TFJob", "tfReplicaSpecs", {"Chief": "tensorflow", "Worker": "tensorflow"}),
    ("MPIJob", "mpiReplicaSpecs", {"Launcher": "launcher", "Worker": "mpi"}),
    ("XGBoostJob", "xgbReplicaSpecs", {"Master": "xgboost", "Worker": "xgboost"}),
])
def test_kinds_a_local_process_cannot_stand_in_for_are_refused_naming_the_kind(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str, key: str, replicas: dict[str, str]):
    manifest = stand_in_manifest()
    template = manifest["spec"]["trial"].pop("template")
    specs = {}
    for name, container in replicas.items():
        replica_template = copy.deepcopy(template)
        replica_template["spec"]["containers"][0]["name"] = container
        specs[name] = {"template": replica_template}
    manifest["spec"]["trial"]["resource"] = {"apiVersion": "kubeflow.org/v1", "kind": kind, "spec": {key: specs}}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(manifest))
    assert main(["validate", str(path)]) == 0, "a valid TuningJob, for a cluster"
    assert main(["run", str(path), "--output", str(tmp_path / "run")]) == EXIT_BAD_INPUT
    errors = capsys.readouterr().err
    assert f"spec.trial.resource.kind: `ktune run` cannot run a kubeflow.org/v1 {kind} trial as local processes" \
           in errors and "run it on a cluster" in errors, errors
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("change, problem", [
    (lambda spec: spec["pytorchReplicaSpecs"].pop("Master"),
     "spec.trial.resource.spec.pytorchReplicaSpecs.Master: `ktune run` starts rank 0 from the Master replica"),
    (lambda spec: spec.update(elasticPolicy={"rdzvBackend": "c10d"}),
     "spec.trial.resource.spec.elasticPolicy: `ktune run` has no rendezvous backend for elastic training"),
])
def test_a_pytorchjob_whose_ranks_meet_without_a_master_is_refused_naming_the_field(tmp_path: Path, change: Any,
                                                                                    problem: str):
    manifest = pytorchjob(stand_in_manifest(), workers=2)
    change(manifest["spec"]["trial"]["resource"]["spec"])
    with pytest.raises(LocalTemplateError) as refused:
        run_locally(load_tuningjob(manifest), tmp_path / "run")
    assert refused.value.problems[0].startswith(problem), refused.value.problems


def test_a_replicas_container_that_cannot_run_locally_is_named_by_its_replica_path(tmp_path: Path):
    manifest = pytorchjob(stand_in_manifest(), workers=1)
    worker = manifest["spec"]["trial"]["resource"]["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]
    worker["spec"]["containers"].insert(0, {"name": "sidecar", "image": "example.com/sidecar:1"})
    worker["spec"]["containers"][1]["envFrom"] = [{"secretRef": {"name": "s"}}]
    with pytest.raises(LocalTemplateError) as refused:
        run_locally(load_tuningjob(manifest), tmp_path / "run")
    assert refused.value.problems == [
        "spec.trial.resource.spec.pytorchReplicaSpecs.Worker.template.spec.containers[1].envFrom: not supported by "
        "`ktune run`; list plain `env` values instead"], "the `pytorch` container is the trainer, not the first one"
