"""Loading a TuningJob: read the YAML, run every check, fill the defaults, return the typed model.

The YAML is read as kubectl reads it (`ktune.spec.kube_yaml`), so a file means locally what it means on a cluster.

Every problem in the input is collected and raised at once as a `SpecError` whose lines read
`spec.path[i].field: rule (got X)`. The loader takes the sampler and pruner rules as an argument
(see `ktune.spec.algorithm_rules`); callers use `ktune.algorithms.load_tuningjob`, bound to them.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from ktune.spec import kube_yaml
from ktune.spec.algorithm_rules import AlgorithmRules
from ktune.spec.checker import Checker, show
from ktune.spec.fields import (
    SPEC_FIELDS,
    TOP_FIELDS,
    check_budget,
    check_metadata,
    check_metrics,
    check_metrics_source,
    check_objectives,
    check_pruner,
    check_sampler,
)
from ktune.spec.model import (
    DEFAULT_STEP_METRIC,
    DEFAULTS,
    Budget,
    JobRef,
    JobSpec,
    MetricsSource,
    Objective,
    PrunerSpec,
    SamplerSpec,
    SpecError,
    TuningJob,
    WarmStart,
)
from ktune.spec.search_space import check_parameters, check_warm_start, parameters_from
from ktune.spec.trial import check_hour_budgets, check_trial, trial_spec


def _check_and_fill(obj: Any, rules: AlgorithmRules) -> tuple[list[str], TuningJob | None]:
    check = Checker()
    top = check.mapping(obj, "TuningJob")
    if top is None:
        return check.problems, None
    check.known_fields(top, "TuningJob", TOP_FIELDS)
    name, namespace = check_metadata(check, top)
    spec = check.mapping(top.get("spec"), "spec")
    if spec is None:
        return check.problems, None
    check.known_fields(spec, "spec", SPEC_FIELDS)
    objectives = check_objectives(check, spec)
    metrics = check_metrics(check, spec.get("metrics", DEFAULTS["metrics"]))
    parameters = check_parameters(check, spec)
    sampler = check_sampler(check, spec.get("sampler", {}), rules)
    pruner = check_pruner(check, spec.get("pruner", {}), objectives, rules)
    budget = check_budget(check, spec.get("budget", {}))
    trial = check_trial(check, spec["trial"]) if "trial" in spec else None
    if "trial" not in spec:
        check.problem("spec", "trial is required (with a template: a PodTemplateSpec, or a resource: a batch/v1 Job)")
    source = check_metrics_source(check, spec.get("metricsSource", {}))
    suspend = spec.get("suspend", DEFAULTS["suspend"])
    if not check.boolean(suspend, "spec.suspend"):
        suspend = None
    typed_parameters = parameters_from(parameters) if parameters is not None else None
    if sampler is not None and typed_parameters is not None and objectives is not None:
        check.all(rules.sampler_fit_problems(sampler["name"], sampler["options"], sampler["seed"], typed_parameters,
                                             len(objectives)))
    if pruner is not None:
        check.all(rules.pruner_build_problems(pruner["name"], pruner["options"]))
    if budget is not None and trial is not None:
        check_hour_budgets(check, budget, trial)
    warm_start = check_warm_start(check, spec["warmStart"], typed_parameters, budget) if "warmStart" in spec \
        else copy.deepcopy(DEFAULTS["warmStart"])
    if (check.problems or name is None or objectives is None or metrics is None or typed_parameters is None
            or sampler is None or pruner is None or budget is None or trial is None or source is None
            or warm_start is None or suspend is None):
        return check.problems, None
    filled_spec = {"objective" if len(objectives) == 1 else "objectives":
                   objectives[0] if len(objectives) == 1 else objectives,
                   "metrics": metrics, "parameters": parameters, "sampler": sampler, "pruner": pruner,
                   "budget": budget, "trial": trial, "metricsSource": source, "suspend": suspend}
    if "warmStart" in spec:
        filled_spec["warmStart"] = warm_start
    manifest = copy.deepcopy(dict(top)) | {"spec": copy.deepcopy(filled_spec)}
    job_spec = JobSpec(
        objectives=tuple(Objective(o["metric"], o["direction"], o.get("goal")) for o in objectives),
        metrics=tuple(metrics),
        parameters=typed_parameters,
        sampler=SamplerSpec(sampler["name"], sampler["seed"], dict(sampler["options"])),
        pruner=PrunerSpec(pruner["name"], dict(pruner["options"]),
                          pruner.get("metric", objectives[0]["metric"] if len(objectives) == 1 else None)),
        budget=Budget(budget["maxTrials"], budget["parallelism"], budget["maxFailedTrials"],
                      budget["activeDeadlineSeconds"], budget["maxGpuHours"], budget["maxCpuHours"]),
        trial=trial_spec(trial),
        metrics_source=MetricsSource(source["type"], source.get("url"), source.get("format"), source.get("filter"),
                                     source.get("stepMetric", DEFAULT_STEP_METRIC)),
        suspend=suspend,
        warm_start=WarmStart(tuple(JobRef(ref["name"], ref.get("namespace")) for ref in warm_start["from"]),
                             tuple(dict(entry) for entry in warm_start["enqueue"])),
    )
    return [], TuningJob(name=name, namespace=namespace, spec=job_spec, manifest=manifest)


def validate_tuningjob(obj: Mapping[str, Any], rules: AlgorithmRules) -> list[str]:
    """Every problem with a parsed TuningJob object; an empty list when it is valid."""
    problems, _ = _check_and_fill(obj, rules)
    return problems


def _yaml_error_text(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark is not None else problem


def _read_yaml(path: str | os.PathLike[str]) -> Any:
    try:
        with open(path, encoding="utf-8") as stream:
            documents = kube_yaml.load_all(stream)
    except OSError as error:
        raise SpecError([f"{os.fspath(path)}: cannot read: {error.strerror or error}"]) from None
    except UnicodeDecodeError as error:
        raise SpecError([f"{os.fspath(path)}: not UTF-8 text: {error.reason}"]) from None
    except yaml.YAMLError as error:
        raise SpecError([f"{os.fspath(path)}: not valid YAML: {_yaml_error_text(error)}"]) from None
    except RecursionError:
        raise SpecError([f"{os.fspath(path)}: nested too deeply to be a TuningJob"]) from None
    if len(documents) != 1:
        raise SpecError([f"{os.fspath(path)}: must hold exactly one TuningJob document (got {len(documents)})"])
    return documents[0]


def load_tuningjob(source: str | os.PathLike[str] | Mapping[str, Any], rules: AlgorithmRules) -> TuningJob:
    """A TuningJob from a YAML file path or a parsed object, with defaults filled; SpecError lists all problems."""
    if isinstance(source, Mapping):
        obj: Any = source
    elif isinstance(source, str | os.PathLike):
        obj = _read_yaml(source)
    else:
        raise SpecError([f"TuningJob: must be a mapping or a file path (got {show(source)})"])
    try:
        problems, job = _check_and_fill(obj, rules)
    except RecursionError:
        raise SpecError(["TuningJob: nested too deeply"]) from None
    if job is None:
        raise SpecError(problems or ["TuningJob: invalid"])
    return job


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def validate_files(paths: Sequence[str | os.PathLike[str]], rules: AlgorithmRules) -> int:
    """`ktune validate`: print each file's verdict and problems; 0 when every file is valid, else 1."""
    failed = 0
    for path in paths:
        try:
            job = load_tuningjob(path, rules)
        except SpecError as error:
            failed += 1
            print(f"{os.fspath(path)}: invalid ({_count(len(error.problems), 'problem')})")
            for problem in error.problems:
                print(f"  {problem}")
        else:
            print(f"{os.fspath(path)}: valid TuningJob {job.name} ({_count(len(job.spec.parameters), 'parameter')}, "
                  f"sampler {job.spec.sampler.name}, pruner {job.spec.pruner.name})")
    return 1 if failed else 0
