"""scripts/dev-cluster: its workdir lock, and a whole start, job and stop on the real control plane."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cluster import dev_cluster
from tests.cluster.controlplane import REPO_ROOT, Cluster
from tests.operator.operator_harness import apply, stand_in_job, wait_finished

JOB_TIMEOUT = 180


def test_the_workdir_of_an_earlier_run_is_emptied_and_records_the_new_pid(tmp_path: Path) -> None:
    (tmp_path / dev_cluster.LOCK_NAME).write_text("12345\n")
    (tmp_path / "etcd").mkdir()
    (tmp_path / "admin.kubeconfig").write_text("old")
    with dev_cluster.lock_workdir(tmp_path):
        assert [p.name for p in tmp_path.iterdir()] == [dev_cluster.LOCK_NAME]
        assert (tmp_path / dev_cluster.LOCK_NAME).read_text().strip().isdigit()


def test_a_directory_that_no_dev_cluster_made_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(dev_cluster.DevClusterError, match="not a dev cluster directory"):
        dev_cluster.lock_workdir(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_second_dev_cluster_on_the_same_workdir_is_refused_while_the_first_holds_it(tmp_path: Path) -> None:
    with dev_cluster.lock_workdir(tmp_path):
        (tmp_path / "etcd").mkdir()
        with pytest.raises(dev_cluster.DevClusterError, match="already runs"):
            dev_cluster.lock_workdir(tmp_path)
        assert (tmp_path / "etcd").is_dir()


def test_the_operator_watches_default_unless_told_otherwise() -> None:
    assert dev_cluster.parse_args([]).namespace == ["default"]
    assert dev_cluster.parse_args(["-n", "a", "-n", "b"]).namespace == ["a", "b"]
    args = dev_cluster.parse_args(["-A"])
    assert args.namespace == [] and args.all_namespaces


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.cluster
def test_a_dev_cluster_runs_a_kubectl_applied_job_and_sigterm_leaves_no_process_behind(tmp_path: Path) -> None:
    workdir = tmp_path / "dev"
    argv = [sys.executable, "-m", "tests.cluster.dev_cluster", f"--workdir={workdir}"]
    process = subprocess.Popen(argv, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    children: list[int] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            if line.startswith("export KUBECONFIG="):
                break
        assert output and output[-1].startswith("export KUBECONFIG="), "".join(output)
        kubeconfig = Path(output[-1].strip().removeprefix("export KUBECONFIG="))
        assert kubeconfig == workdir / "admin.kubeconfig"
        pgrep = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True, check=True)
        children = [int(pid) for pid in pgrep.stdout.split()]
        assert len(children) == 5  # etcd, kube-apiserver, kube-controller-manager, the node agent, the operator

        cluster = Cluster(kubeconfig=kubeconfig, workdir=tmp_path)
        apply(cluster, stand_in_job("dev", "default", budget={"maxTrials": 2, "parallelism": 2}))
        job = wait_finished(cluster, "default", "dev", timeout=JOB_TIMEOUT)
        assert job["status"]["phase"] == "Succeeded", job["status"]
    finally:
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=120)
    assert process.returncode == 0, "".join(output) + rest
    assert rest.rstrip().endswith("dev-cluster: stopped")
    assert [pid for pid in children if alive(pid)] == []
