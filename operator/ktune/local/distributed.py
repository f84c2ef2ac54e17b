"""A Job trial (`spec.trial.resource`) under `ktune run`: its pods as processes on this machine, all at once.

Each process gets what a pod of the Job would (JOB_COMPLETION_INDEX for an Indexed Job) and what torchrun gives
its workers (WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR=127.0.0.1, MASTER_PORT one free port for the trial), so a
trainer written for `torchrun` or for an Indexed Job runs unchanged. Rank 0 is the metrics process, as index 0 is
the metrics pod on a cluster. Only Jobs whose pods all run at once can run here: one that runs its completions in
waves (completions above parallelism) is refused, naming the fields.
"""

from ktune.local.processes import LocalTemplateError
from ktune.spec import TrialSpec

RESOURCE_PATH = "spec.trial.resource.spec"


def local_pods(trial: TrialSpec) -> int:
    """How many processes one attempt of the trial runs (1 for a pod trial); LocalTemplateError when `ktune run`
    cannot run the trial's resource."""
    resource = trial.resource
    if resource is None:
        return 1
    if resource.kind != "Job":
        raise LocalTemplateError([f"spec.trial.resource.kind: `ktune run` cannot run a {resource.api_version} "
                                  f"{resource.kind} trial locally: run it on a cluster"])
    spec = resource.manifest["spec"]
    completions = spec.get("completions")
    if completions is not None and completions != spec["parallelism"]:
        raise LocalTemplateError([
            f"{RESOURCE_PATH}.completions: `ktune run` runs every pod of a Job trial at once, as local processes: "
            f"set completions equal to parallelism (got completions {completions}, parallelism "
            f"{spec['parallelism']}), or run the job on a cluster"])
    return int(spec["parallelism"])


def distributed_env(trial: TrialSpec, rank: int, master_port: int) -> dict[str, str]:
    """The variables of process `rank` of a Job trial (none for a pod trial)."""
    if trial.resource is None:
        return {}
    world = local_pods(trial)
    variables = {"WORLD_SIZE": str(world), "RANK": str(rank), "LOCAL_RANK": str(rank),
                 "LOCAL_WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(master_port)}
    if trial.resource.indexed:
        variables["JOB_COMPLETION_INDEX"] = str(rank)
    return variables
