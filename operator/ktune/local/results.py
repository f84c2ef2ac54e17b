"""The files a local run leaves behind: trials.csv, best.json, PNG plots, and the final summary table."""

import csv
import json
import math
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import optuna
from optuna.trial import FrozenTrial, TrialState
from optuna.visualization import matplotlib as optuna_plots

from ktune.engine import FinishDecision, TrialRecord
from ktune.local.progress import format_duration
from ktune.spec import JobSpec

TRIALS_CSV = "trials.csv"
TEST_PREFIX = "test_"  # the trainer's metrics on held-out test queries, next to the validation ones
BEST_JSON = "best.json"
PLOTS_DIR = "plots"


def write_json_atomically(path: Path, data: Any) -> None:
    """Write JSON so that a reader (or a crash) never sees half a file."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=2, sort_keys=False, default=_json_number) + "\n")
    os.replace(partial, path)


def _json_number(value: Any) -> Any:
    return float(value) if isinstance(value, int | float) else str(value)


def metric_columns(spec: JobSpec, reported: Iterable[Mapping[str, float]]) -> list[str]:
    """Objective metrics first, then the recorded extras, then whatever else the trainer reported."""
    columns = list(spec.recorded_metrics)
    others = sorted({name for metrics in reported for name in metrics} - set(columns))
    return columns + others


def write_trials_csv(
    path: Path, spec: JobSpec, records: Sequence[TrialRecord], attempts: Mapping[int, int]
) -> None:
    """One row per trial: number, state, reason, attempts, duration, params, metrics, message."""
    param_names = [parameter.name for parameter in spec.parameters]
    metrics = metric_columns(spec, (record.metrics for record in records))
    header = ["number", "state", "reason", "attempts", "duration_seconds"]
    header += [f"param_{name}" for name in param_names] + metrics + ["message"]
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for record in records:
            duration = (
                f"{record.finished_at - record.started_at:.1f}"
                if record.started_at is not None and record.finished_at is not None
                else ""
            )
            row = [record.number, str(record.state), record.reason or "", attempts.get(record.number, 1), duration]
            row += [record.params.get(name, "") for name in param_names]
            row += [_csv_number(record.metrics.get(name)) for name in metrics]
            row.append(record.message or "")
            writer.writerow(row)
    os.replace(partial, path)


def _csv_number(value: float | None) -> str:
    return "" if value is None else repr(value)


def trial_summary(spec: JobSpec, record: TrialRecord) -> dict[str, Any]:
    """A trial as best.json and the TuningJob status show it: number, params, value(s), metrics."""
    summary: dict[str, Any] = {"number": record.number, "params": dict(record.params)}
    values = list(record.values or [])
    if spec.multi_objective:
        summary["values"] = dict(zip(spec.objective_metrics, values, strict=False))
    else:
        summary["value"] = values[0] if values else None
    summary["metrics"] = dict(record.metrics)
    return summary


def best_document(
    job_name: str,
    spec: JobSpec,
    counts: Mapping[str, int],
    best: TrialRecord | None,
    pareto_front: Sequence[TrialRecord],
    decision: FinishDecision | None,
    wall_seconds: float,
) -> dict[str, Any]:
    """The content of best.json."""
    document: dict[str, Any] = {
        "tuningjob": job_name,
        "objectives": [{"metric": o.metric, "direction": o.direction} for o in spec.objectives],
        "finished": (
            {"reason": decision.reason, "message": decision.message, "succeeded": decision.succeeded}
            if decision
            else None
        ),
        "trialCounts": dict(counts),
        "wallSeconds": round(wall_seconds, 1),
    }
    if spec.multi_objective:
        document["paretoFront"] = [trial_summary(spec, record) for record in pareto_front]
    else:
        document["bestTrial"] = trial_summary(spec, best) if best else None
    return document


def write_plots(directory: Path, study: optuna.Study, spec: JobSpec) -> list[str]:
    """Optimization history, parameter importances, parallel coordinates (and the Pareto front with
    several objectives) as PNG files; returns a note for every plot that could not be drawn."""
    matplotlib.use("Agg")  # files only: never open a window, work without a display
    directory.mkdir(parents=True, exist_ok=True)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    first = spec.objective_metrics[0]
    target: Callable[[FrozenTrial], float] | None = (lambda t: t.values[0]) if spec.multi_objective else None
    plots: dict[str, Callable[[], Any]] = {
        "optimization_history": lambda: optuna_plots.plot_optimization_history(
            study, target=target, target_name=first
        ),
        "parallel_coordinate": lambda: optuna_plots.plot_parallel_coordinate(
            study, target=target, target_name=first
        ),
    }
    notes: list[str] = []
    if len(complete) >= 2:
        plots["param_importances"] = lambda: optuna_plots.plot_param_importances(
            study, target=target, target_name=first
        )
    else:
        notes.append(f"param_importances: needs at least 2 succeeded trials (have {len(complete)})")
    if spec.multi_objective:
        plots["pareto_front"] = lambda: optuna_plots.plot_pareto_front(
            study, target_names=list(spec.objective_metrics)
        )
    if not complete:
        return [f"{name}: no succeeded trial to plot" for name in plots] + notes
    for name, draw in plots.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
            try:
                axes = draw()
            except (ValueError, RuntimeError, ZeroDivisionError) as error:
                notes.append(f"{name}: {error}")
                continue
        figure = _figure_of(axes)
        figure.set_size_inches(10, 6)
        figure.tight_layout()
        figure.savefig(directory / f"{name}.png", dpi=100)
        plt.close(figure)
    return notes


def _figure_of(axes: Any) -> Any:
    if hasattr(axes, "figure"):
        return axes.figure
    return axes.flat[0].figure  # an array of Axes (parallel coordinates / Pareto with many objectives)


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.6g}"
    return str(value)


def _metrics_table(spec: JobSpec, metrics: Mapping[str, float]) -> list[str]:
    """Metric, its validation value and, where the trainer reported `test_<metric>`, its test value."""
    names = [name for name in metric_columns(spec, [metrics]) if name in metrics]
    rows = []
    for name in names:
        if name.startswith(TEST_PREFIX) and name[len(TEST_PREFIX) :] in metrics:
            continue  # shown in the test column of its metric
        test = metrics.get(TEST_PREFIX + name)
        rows.append((name, _format_value(metrics[name]), "" if test is None else _format_value(test)))
    width = max(len(row[0]) for row in [("metric", "", ""), *rows])
    lines = [f"  {'metric':<{width}}  {'validation':>12}  {'test':>12}"]
    lines += [f"  {name:<{width}}  {value:>12}  {test:>12}" for name, value, test in rows]
    return lines


def _table(rows: Sequence[tuple[str, str]], header: tuple[str, str]) -> list[str]:
    width = max(len(name) for name, _ in [header, *rows])
    return [f"  {header[0]:<{width}}  {header[1]}"] + [f"  {name:<{width}}  {value}" for name, value in rows]


def summary_table(
    job_name: str,
    spec: JobSpec,
    counts: Mapping[str, int],
    best: TrialRecord | None,
    pareto_front: Sequence[TrialRecord],
    decision: FinishDecision | None,
    wall_seconds: float,
) -> str:
    """The final report of a run: the best trial's params and every metric it reported, then totals."""
    lines: list[str] = []
    objectives = ", ".join(f"{o.metric} ({o.direction})" for o in spec.objectives)
    chosen = list(pareto_front) if spec.multi_objective else ([best] if best else [])
    if not chosen:
        lines.append(f"No trial of {job_name} succeeded; objective: {objectives}.")
    for record in chosen:
        label = "Pareto-optimal trial" if spec.multi_objective else "Best trial"
        lines.append(f"{label} {record.number} of {job_name} — objective: {objectives}")
        lines += _table([(name, _format_value(value)) for name, value in record.params.items()], ("parameter", "value"))
        lines += _metrics_table(spec, record.metrics)
        lines.append("")
    total = sum(counts.values())
    lines.append(
        f"Trials: {total} ({counts.get('succeeded', 0)} succeeded, {counts.get('pruned', 0)} pruned, "
        f"{counts.get('failed', 0)} failed, {counts.get('running', 0)} unfinished)"
    )
    finish = f"{decision.reason}: {decision.message}" if decision else "interrupted (continue with --resume)"
    lines.append(f"Finished: {finish}")
    lines.append(f"Wall time: {format_duration(wall_seconds)}")
    return "\n".join(lines)
