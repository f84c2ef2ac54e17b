"""What a same-seed engine rebuilt from a job's Trial objects suggests: the check that an operator killed and
restarted many times still asked each trial's parameters from the study it should have had.

Each trial is suggested by a sampler seeded from (job seed, trial number) over the study as it was when the
trial was asked (`ktune.engine.study`). That study held the trials before it, each finished with the outcome
its Trial shows now, except those still running then: with `parallelism: 2` at most one. Random sampling and
grid ids do not depend on which one (a grid sampler skips running points as well as finished ones); TPE does
(its constant liar counts a running trial as a bad one), so every possibility is tried. A warm-started job's
study holds the imported trials first, as the operator's does.
"""

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ktune.algorithms import load_tuningjob
from ktune.engine import Engine, TrialRecord, TrialState
from ktune.engine.warm_start import WarmStartSource, import_trials
from ktune.operator.trials import record_from_trial


def imported_records(job: Mapping[str, Any], source: Mapping[str, Any],
                     source_trials: Mapping[int, Mapping[str, Any]]) -> list[TrialRecord]:
    """What `job` imports from the finished job `source` (its warmStart.from) with these Trials."""
    label = f"{source['metadata']['namespace']}/{source['metadata']['name']}"
    records = [record_from_trial(source_trials[number]) for number in sorted(source_trials)]
    found = WarmStartSource(label, load_tuningjob(source).spec.parameters, records)
    return import_trials(load_tuningjob(job).spec, [found]).records


def studies_when_asked(records: list[TrialRecord]) -> Iterator[tuple[str, list[TrialRecord]]]:
    """The trials before a new one as the study may have held them: all finished, or one of them running."""
    yield "all finished", records
    for running in reversed(range(len(records))):
        record = records[running]
        as_running = TrialRecord(number=record.number, params=record.params, state=TrialState.RUNNING,
                                 started_at=record.started_at, system_attrs=record.system_attrs)
        yield f"trial {running} running", [*records[:running], as_running, *records[running + 1:]]


def suggestion_mismatches(job: Mapping[str, Any], trials: Mapping[int, Mapping[str, Any]],
                          imported: Sequence[TrialRecord] = ()) -> tuple[list[str], dict[str, int]]:
    """The trials whose params no rebuilt engine suggests (with why), and how often each kind of study matched."""
    spec = load_tuningjob(job).spec
    records = [record_from_trial(trials[number]) for number in sorted(trials)]
    mismatches: list[str] = []
    matched: dict[str, int] = {}
    for number, record in enumerate(records):
        for kind, before in studies_when_asked(records[:number]):
            if Engine(spec, before, imported=imported).ask().params == record.params:
                key = "all finished" if kind == "all finished" else "one running"
                matched[key] = matched.get(key, 0) + 1
                break
        else:
            expected = Engine(spec, records[:number], imported=imported).ask().params
            mismatches.append(f"trial {number} ran {record.params}; a rebuilt engine suggests {expected} "
                              "(with every earlier trial finished), or another value with one of them running")
    return mismatches, matched
