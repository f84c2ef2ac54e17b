"""Schemas of what the operator writes: a TuningJob's status and the Trial resource (one per trial)."""

from ktune.spec.openapi import Schema, array, free_form, integer, number, obj, string

MAX_PARETO = 100
MAX_INTERMEDIATE = 1000
MAX_INTERMEDIATE_HISTORY_STEPS = 10_000
MAX_INTERMEDIATE_HISTORY_LENGTH = 46 * MAX_INTERMEDIATE_HISTORY_STEPS  # a step of 20 digits, ':', a float, ','
MAX_STRING = 1024


def condition_schema() -> Schema:
    return obj(
        "One condition, after the Kubernetes API conventions.",
        {
            "type": string("Running, Succeeded, Failed, Invalid, Ready (succeeded), Stalled (failed), Suspended, "
                            "TrialsWaiting or SpecChangeRefused."),
            "status": string("True, False or Unknown.", enum=["True", "False", "Unknown"]),
            "reason": string("One CamelCase word saying why (e.g. MaxTrialsReached, GoalReached)."),
            "message": string("A human explanation.", maxLength=8 * MAX_STRING),
            "lastTransitionTime": string("When status last changed.", format="date-time"),
            "observedGeneration": integer("The metadata.generation this condition was computed from."),
        },
        required=["type", "status"],
    )


def trial_summary_schema(description: str, with_metrics: bool) -> Schema:
    properties = {
        "name": string("The Trial object's name."),
        "number": integer("The trial's number in its job (0, 1, ...)."),
        "params": free_form("The trial's parameter values."),
        "value": number("The objective's value (single objective)."),
        "values": array("The objectives' values, in the order of objectives.", number("One value.")),
    }
    if with_metrics:
        properties["metrics"] = obj("Final metrics the trainer reported.", {},
                                    additionalProperties=number("A metric value."))
    return obj(description, properties)


def tuningjob_status_schema() -> Schema:
    return obj(
        "Where the job stands; written by the operator. Bounded in size: per-trial history is in Trials.",
        {
            "phase": string("Pending, Running, Suspended (spec.suspend), Succeeded or Failed.",
                            enum=["Pending", "Running", "Suspended", "Succeeded", "Failed"]),
            "objective": string("What BEST means: each objective's direction and metric, e.g. `max accuracy`."),
            "conditions": array("Conditions: wait for a finished job with kubectl wait --for=condition=Ready "
                                "(Succeeded; Stalled when it failed), as kstatus and Argo CD read them.",
                                condition_schema(), maxItems=16,
                                **{"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]}),
            "observedGeneration": integer("The metadata.generation the operator last acted on."),
            "trialCounts": obj("How many trials are in each state.", {
                "running": integer("Trials running now."),
                "succeeded": integer("Trials that finished with their objective values."),
                "pruned": integer("Trials stopped early by the pruner."),
                "failed": integer("Trials that failed after their retries."),
                "total": integer("All trials started so far."),
                "max": integer("budget.maxTrials."),
            }),
            "trials": string("Finished trials / maxTrials, as the TRIALS column shows them."),
            "bestTrial": trial_summary_schema("The best trial so far (single objective).", with_metrics=True),
            "paretoFront": array("The Pareto-optimal trials so far (multi-objective; the first ones only).",
                                 trial_summary_schema("One Pareto-optimal trial.", with_metrics=False),
                                 maxItems=MAX_PARETO),
            "acceptedSpec": string("The search space (objective(s), metrics, parameters, sampler, pruner, warmStart) "
                                   "as the operator first accepted it, as JSON: the job runs with it whatever later "
                                   "edits of those fields say. Written by the operator only."),
            "importedTrials": integer("Trials of earlier jobs (spec.warmStart.from) that seed the study."),
            "importedTrialsDropped": integer("Succeeded trials of earlier jobs left out: outside this job's "
                                             "space, without its objective metrics, or past the cap of "
                                             "status.warmStartTrials."),
            "warmStartTrials": string("The trials of spec.warmStart.from imported into the study, as compact JSON "
                                      "(parameter names, then each trial's values and objective values): read "
                                      "once when the job was accepted, at most 1,000 trials and 256 KiB, so that "
                                      "every rebuild imports the same ones. Written by the operator only.",
                                      maxLength=256 * 1024),
            "gpuHoursUsed": number("GPU-hours the trials used so far (requested GPUs times running time)."),
            "cpuHoursUsed": number("CPU-hours the trials used so far (requested cpu times running time)."),
            "startTime": string("When the operator started the job.", format="date-time"),
            "completionTime": string("When the job finished.", format="date-time"),
            "message": string("A human summary of the job's progress or outcome.", maxLength=8 * MAX_STRING),
        },
    )


def trial_schema() -> Schema:
    return obj(
        "One trial of a TuningJob: its parameters and outcome. Created by the operator; one pod per attempt.",
        {
            "apiVersion": string("The API version of this object (ktune.dev/v1alpha1)."),
            "kind": string("Trial."),
            "spec": obj(
                "What the trial is; never changes after creation.",
                {
                    "tuningJob": string("The TuningJob this trial belongs to."),
                    "number": integer("The trial's number in its job (0, 1, ...).", minimum=0),
                    "params": free_form("The parameter values the sampler chose."),
                    "startTime": string("When the trial was asked for (RFC 3339).", format="date-time"),
                    "systemAttrs": string("What the sampler wrote on the trial when it chose the parameters (JSON: "
                                          "grid ids, CMA-ES and NSGA-II state), for a study rebuilt after a "
                                          "restart."),
                },
                required=["tuningJob", "number"],
                **{"x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "spec is immutable"}]},
            ),
            "status": obj(
                "How the trial went; written by the operator.",
                {
                    "state": string("Pending (its resource waits for Kueue to admit it: reason QueueAdmission), "
                                    "Running, Succeeded, Pruned or Failed.",
                                    enum=["Pending", "Running", "Succeeded", "Pruned", "Failed"]),
                    "value": number("The (first) objective's final value."),
                    "values": array("The objectives' final values, in the order of objectives.",
                                    number("One value.")),
                    "metrics": obj("The latest or final metrics the trainer reported.", {},
                                   additionalProperties=number("A metric value.")),
                    "intermediate": array(
                        "The pruning metric's intermediate values (the latest ones).",
                        obj("One intermediate value.", {"step": integer("The step it belongs to."),
                                                        "value": number("The value.")}),
                        maxItems=MAX_INTERMEDIATE),
                    "intermediateHistory": string(
                        "Every intermediate value a pruner may look at, for a study rebuilt after a restart: "
                        "step:value items joined by commas, the step left out where it follows the one before "
                        "(0:0.5,0.6,10:0.8 is steps 0, 1 and 10); at most the latest "
                        f"{MAX_INTERMEDIATE_HISTORY_STEPS:,} steps.", maxLength=MAX_INTERMEDIATE_HISTORY_LENGTH),
                    "attempts": integer("How many attempts were started for this trial (1 + retries used)."),
                    "kind": string("What each attempt runs: Pod (one pod), or the kind of the trial's resource "
                                   "(Job, PyTorchJob, TFJob, MPIJob, XGBoostJob)."),
                    "pods": integer("How many pods each attempt runs at once."),
                    "podName": string("The current (or last) attempt's pod (kind Pod)."),
                    "resourceName": string("The current (or last) attempt's resource (a Job, PyTorchJob, ...), "
                                           "named like a pod trial's pod."),
                    "paramsSummary": string("The params as one short JSON line (the PARAMS column)."),
                    "reason": string("Why it is Pending (QueueAdmission) or was Pruned or Failed, one CamelCase "
                                     "word (PrunedByPruner, "
                                     "OOMKilled, Error, ImagePullBackOff, Unschedulable, MissingObjective, "
                                     "JobStopped, ...)."),
                    "message": string("Details, e.g. the end of the failed container's log.",
                                      maxLength=8 * MAX_STRING),
                    "startTime": string("When the trial started.", format="date-time"),
                    "finishTime": string("When the trial finished.", format="date-time"),
                    "systemAttrs": string("The sampler's bookkeeping for this trial (Optuna system attributes as "
                                          "JSON): a restarted operator continues grid, CMA-ES and NSGA-II "
                                          "searches with it."),
                },
            ),
        },
    )
