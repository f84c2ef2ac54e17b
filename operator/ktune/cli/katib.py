"""Convert a Katib v1beta1 `Experiment` into a ktune `TuningJob`.

Most teams who would try ktune already have Katib experiments. The conversion carries over what
has a meaning in ktune and lists, in plain words, everything it could not: a note per dropped or
approximated field, so nothing is changed silently.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TextIO

import yaml

from ktune.algorithms.options import IGNORED_OPTIONS
from ktune.cli.katib_collector import metrics_source
from ktune.cli.katib_trial import TrialTemplateError, convert_trial
from ktune.contract import API_GROUP, API_VERSION, TUNINGJOB_KIND, param_env_name
from ktune.log_metrics import metric_name
from ktune.spec import kube_yaml

KATIB_API_VERSION = "kubeflow.org/v1beta1"

# Katib suggestion algorithm -> (ktune sampler, ktune pruner or None, what changes in meaning).
_ALGORITHMS: dict[str, tuple[str, str | None, str | None]] = {
    "random": ("random", None, None),
    "grid": ("grid", None, None),
    "tpe": ("tpe", None, None),
    "multivariate-tpe": ("tpe", None, None),
    "cmaes": ("cmaes", None, None),
    "sobol": ("qmc", None, None),
    "bayesianoptimization": ("tpe", None, "Katib's scikit-optimize Bayesian optimization becomes Optuna's TPE "
                             "sampler (Optuna's GP sampler needs torch, which the operator image leaves out)"),
    "hyperband": ("random", "hyperband", "Katib's hyperband suggestion becomes random sampling with Optuna's "
                  "Hyperband pruner; trials are stopped early on intermediate values instead of being "
                  "relaunched with a larger resource"),
}
_UNSUPPORTED_ALGORITHMS = {"enas", "darts", "pbt"}

# Katib algorithmSettings names -> ktune sampler option names, per ktune sampler.
_SAMPLER_SETTINGS: dict[str, dict[str, str]] = {
    "tpe": {"n_startup_trials": "n_startup_trials", "n_ei_candidates": "n_ei_candidates",
            "n_initial_points": "n_startup_trials"},  # skopt's name, from bayesianoptimization
    "cmaes": {"sigma": "sigma0", "restart_strategy": "restart_strategy"},
    "random": {},
    "grid": {},
    "qmc": {},
}
_SEED_SETTINGS = {"random_state", "seed"}

# Katib medianstop settings -> Optuna MedianPruner options.
_MEDIANSTOP_SETTINGS = {"min_trials_required": "n_startup_trials", "start_step": "n_warmup_steps"}


@dataclass
class Conversion:
    """The TuningJob made from an Experiment, and what could not be carried over."""

    tuningjob: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    """What cannot be carried over at all, each with what to change (the TuningJob is still valid)."""


class KatibError(ValueError):
    """The input is not a Katib v1beta1 Experiment that can be converted at all."""


def parameter_name(katib_name: str) -> str:
    """A Katib parameter name as a ktune parameter name (usable as an environment variable suffix)."""
    name = re.sub(r"[^a-z0-9_]+", "_", katib_name.strip().lower()).strip("_")
    return name if name[:1].isalpha() else f"p_{name}"


def convert_experiment(experiment: Any) -> Conversion:
    """Convert one parsed Katib `Experiment` object; raises KatibError when it is not one."""
    if not isinstance(experiment, Mapping) or experiment.get("kind") != "Experiment":
        raise KatibError("not a Katib Experiment: expected `kind: Experiment`")
    if experiment.get("apiVersion") != KATIB_API_VERSION:
        raise KatibError(f"apiVersion must be {KATIB_API_VERSION} (got {experiment.get('apiVersion')!r})")
    spec = experiment.get("spec")
    if not isinstance(spec, Mapping):
        raise KatibError("spec: missing or not a mapping")
    notes: list[str] = []
    refused: list[str] = []
    renamed: dict[str, str] = {}
    parameters = [_parameter(p, i, notes, renamed) for i, p in enumerate(_list(spec, "parameters"))]
    job_spec: dict[str, Any] = {}
    _objective(spec.get("objective") or {}, job_spec, notes)
    job_spec["parameters"] = parameters
    _algorithm(spec.get("algorithm") or {}, job_spec, notes)
    _early_stopping(spec.get("earlyStopping"), job_spec, notes)
    job_spec["budget"] = _budget(spec)
    job_spec["trial"] = _trial(spec.get("trialTemplate") or {}, renamed, notes, refused)
    source = metrics_source(spec, notes, refused)
    if source is not None:
        job_spec["metricsSource"] = source
    _unsupported_fields(spec, notes)
    metadata = experiment.get("metadata") or {}
    tuningjob = {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": TUNINGJOB_KIND,
        "metadata": {k: metadata[k] for k in ("name", "namespace") if k in metadata},
        "spec": job_spec,
    }
    return Conversion(tuningjob=tuningjob, notes=notes, refused=refused)


def _list(spec: Mapping[str, Any], key: str) -> list[Any]:
    value = spec.get(key) or []
    if not isinstance(value, list):
        raise KatibError(f"spec.{key}: expected a list")
    return value


def _objective(objective: Mapping[str, Any], job_spec: dict[str, Any], notes: list[str]) -> None:
    katib_metric = objective.get("objectiveMetricName")
    if not katib_metric:
        raise KatibError("spec.objective.objectiveMetricName: missing")
    metric = metric_name(katib_metric)
    if metric != katib_metric:
        notes.append(f"objective metric `{katib_metric}` is named `{metric}` in ktune (log lines naming "
                     f"`{katib_metric}` are read as `{metric}`; a /metrics page must say ktune_trial_metric"
                     f"{{metric=\"{metric}\"}})")
    out: dict[str, Any] = {"metric": metric, "direction": objective.get("type", "maximize")}
    if objective.get("goal") is not None:
        out["goal"] = float(objective["goal"])
    job_spec["objective"] = out
    extra = [metric_name(m) for m in objective.get("additionalMetricNames") or []]
    if extra:
        job_spec["metrics"] = extra
    if objective.get("metricStrategies"):
        notes.append("objective.metricStrategies dropped: ktune takes the trial's final reported value "
                     "(the trainer's result message), not a min/max/latest over its history")


def _parameter(param: Mapping[str, Any], index: int, notes: list[str], renamed: dict[str, str]) -> dict[str, Any]:
    path = f"spec.parameters[{index}]"
    katib_name = param.get("name")
    if not katib_name:
        raise KatibError(f"{path}.name: missing")
    name = parameter_name(katib_name)
    renamed[katib_name] = name
    if name != katib_name:
        notes.append(f"parameter `{katib_name}` is named `{name}` in ktune (environment variable "
                     f"{param_env_name(name)})")
    space = param.get("feasibleSpace") or {}
    kind = param.get("parameterType")
    if kind in ("categorical", "discrete"):
        choices = space.get("list") or []
        if kind == "discrete":
            choices = [_number(c, f"{path}.feasibleSpace.list") for c in choices]
        return {"name": name, "type": "categorical", "choices": list(choices)}
    if kind not in ("int", "double"):
        raise KatibError(f"{path}.parameterType: unknown type {kind!r} (int, double, categorical, discrete)")
    number_type = int if kind == "int" else float
    low = number_type(_number(space.get("min"), f"{path}.feasibleSpace.min"))
    high = number_type(_number(space.get("max"), f"{path}.feasibleSpace.max"))
    if low == high:
        notes.append(f"parameter `{katib_name}` has one value ({low}): it becomes a categorical with one choice")
        return {"name": name, "type": "categorical", "choices": [low]}
    out: dict[str, Any] = {"name": name, "type": "int" if kind == "int" else "float", "low": low, "high": high}
    distribution = space.get("distribution", "uniform")
    log = distribution in ("logUniform", "logNormal")
    if distribution in ("normal", "logNormal"):
        notes.append(f"parameter `{katib_name}`: distribution {distribution} is searched as "
                     f"{'log-uniform' if log else 'uniform'} between min and max")
    if log:
        out["log"] = True
    if space.get("step") is not None:
        if log:
            notes.append(f"parameter `{katib_name}`: step dropped, Optuna cannot combine a step with a log scale")
        else:
            step = number_type(_number(space["step"], f"{path}.feasibleSpace.step"))
            out["step"] = step
            out["high"] = _whole_steps_high(low, high, step)
            if out["high"] != high:
                notes.append(f"parameter `{katib_name}`: max {high} lowered to {out['high']} so that max - min is a "
                             f"whole number of steps of {step}")
    return out


def _whole_steps_high(low: float, high: float, step: float) -> float:
    """The largest value low + k*step that is <= high, rounded to the step's precision (as Optuna does)."""
    steps = int((high - low) / step + 1e-9)
    decimals = max(0, _decimals(step), _decimals(low))
    value = round(low + steps * step, decimals)
    return int(value) if isinstance(high, int) else value


def _decimals(value: float) -> int:
    """Digits after the decimal point of a finite number as written (0.25 -> 2)."""
    exponent = Decimal(str(value)).as_tuple().exponent
    return -exponent if isinstance(exponent, int) else 0  # a str exponent marks NaN or infinity


def _number(value: Any, path: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise KatibError(f"{path}: expected a number (got {value!r})") from None
    return int(number) if number.is_integer() else number


def _algorithm(algorithm: Mapping[str, Any], job_spec: dict[str, Any], notes: list[str]) -> None:
    name = algorithm.get("algorithmName", "random")
    if name in _UNSUPPORTED_ALGORITHMS:
        raise KatibError(f"spec.algorithm.algorithmName: {name} is neural architecture search or population-based "
                         "training, which ktune does not do")
    if name not in _ALGORITHMS:
        raise KatibError(f"spec.algorithm.algorithmName: unknown algorithm {name!r}")
    sampler_name, pruner_name, meaning = _ALGORITHMS[name]
    if meaning:
        notes.append(meaning)
    sampler: dict[str, Any] = {"name": sampler_name}
    options: dict[str, Any] = {}
    if name == "multivariate-tpe":
        options["multivariate"] = True
    if name == "sobol":
        options["qmc_type"] = "sobol"
    known = _SAMPLER_SETTINGS.get(sampler_name, {})
    for setting in algorithm.get("algorithmSettings") or []:
        key, value = setting.get("name"), setting.get("value")
        if key in _SEED_SETTINGS:
            sampler["seed"] = int(_number(value, f"spec.algorithm.algorithmSettings[{key}]"))
        elif key in known and (sampler_name, known[key]) in IGNORED_OPTIONS:
            notes.append(f"algorithm setting `{key}: {value}` dropped: Optuna's {sampler_name} sampler ignores it "
                         f"({IGNORED_OPTIONS[sampler_name, known[key]]})")
        elif key in known:
            options[known[key]] = _setting_value(value)
        elif pruner_name == "hyperband" and key in ("r_l", "eta", "resource_name"):
            continue  # carried into the pruner below
        else:
            notes.append(f"algorithm setting `{key}: {value}` dropped: no equivalent in ktune's {sampler_name} sampler")
    if options:
        sampler["options"] = options
    job_spec["sampler"] = sampler
    if pruner_name == "hyperband":
        settings = {s.get("name"): s.get("value") for s in algorithm.get("algorithmSettings") or []}
        pruner_options: dict[str, Any] = {}
        if settings.get("r_l") is not None:
            pruner_options["max_resource"] = int(_number(settings["r_l"], "spec.algorithm.algorithmSettings[r_l]"))
        if settings.get("eta") is not None:
            pruner_options["reduction_factor"] = int(_number(settings["eta"], "spec.algorithm.algorithmSettings[eta]"))
        if settings.get("resource_name"):
            notes.append(f"hyperband resource `{settings['resource_name']}` is not passed to trials: the trainer "
                         "reports its progress as ktune_trial_step and is stopped early instead")
        job_spec["pruner"] = {"name": "hyperband", **({"options": pruner_options} if pruner_options else {})}


def _setting_value(value: Any) -> Any:
    try:
        return _number(value, "")
    except KatibError:
        return value


def _early_stopping(early: Mapping[str, Any] | None, job_spec: dict[str, Any], notes: list[str]) -> None:
    if not early:
        return
    name = early.get("algorithmName")
    if name != "medianstop":
        notes.append(f"earlyStopping algorithm `{name}` dropped: only medianstop has a ktune equivalent")
        return
    if "pruner" in job_spec:
        notes.append("earlyStopping medianstop dropped: the hyperband pruner already stops trials early")
        return
    options: dict[str, Any] = {}
    for setting in early.get("algorithmSettings") or []:
        key, value = setting.get("name"), setting.get("value")
        if key in _MEDIANSTOP_SETTINGS:
            options[_MEDIANSTOP_SETTINGS[key]] = int(_number(value, f"spec.earlyStopping.algorithmSettings[{key}]"))
        else:
            notes.append(f"earlyStopping setting `{key}: {value}` dropped: no equivalent in Optuna's MedianPruner")
    job_spec["pruner"] = {"name": "median", **({"options": options} if options else {})}


def _budget(spec: Mapping[str, Any]) -> dict[str, Any]:
    budget: dict[str, Any] = {}
    for katib_key, key in (("maxTrialCount", "maxTrials"), ("parallelTrialCount", "parallelism"),
                           ("maxFailedTrialCount", "maxFailedTrials")):
        if spec.get(katib_key) is not None:
            budget[key] = int(spec[katib_key])
    return budget


def _trial(template: Mapping[str, Any], renamed: dict[str, str], notes: list[str],
           refused: list[str]) -> dict[str, Any]:
    references = {p["name"]: renamed.get(p.get("reference"), parameter_name(str(p.get("reference"))))
                  for p in template.get("trialParameters") or []}
    try:
        return convert_trial(template, references, notes, refused)
    except TrialTemplateError as error:
        raise KatibError(str(error)) from None


def _unsupported_fields(spec: Mapping[str, Any], notes: list[str]) -> None:
    for key, why in (("resumePolicy", "ktune jobs always keep their trials in Trial objects"),
                     ("nasConfig", "ktune does not do neural architecture search")):
        if spec.get(key):
            notes.append(f"{key} dropped: {why}")


def import_katib(path: str, out: TextIO, err: TextIO) -> int:
    """`ktune import-katib FILE`: the TuningJob YAML on ``out``, what was not carried over on ``err``.

    Returns the exit code: 0 when converted (even with notes), 2 when the file cannot be converted.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            experiment = kube_yaml.load(handle)
        conversion = convert_experiment(experiment)
    except (OSError, yaml.YAMLError) as exc:
        err.write(f"ktune import-katib: {path}: cannot read: {exc}\n")
        return 2
    except KatibError as exc:
        err.write(f"ktune import-katib: {path}: {exc}\n")
        return 2
    out.write(kube_yaml.dump(conversion.tuningjob))
    for note in conversion.notes:
        err.write(f"ktune import-katib: not carried over as is: {note}\n")
    for refusal in conversion.refused:
        err.write(f"ktune import-katib: cannot be carried over: {refusal}\n")
    return 0
