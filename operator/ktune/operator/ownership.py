"""Which Trials and pods are a TuningJob's: the ones it controls, by uid, whatever labels or names others carry.

The operator finds a job's children by its labels (one server-side selector, one watch), but labels decide
nothing: a Trial is the job's only when its controller ownerReference names the TuningJob's uid, a pod only when
its controller is one of those Trials. Two kinds of strangers carry a job's labels:

- the children of an earlier TuningJob of the same name, deleted and created again before the garbage collector
  removed them: same labels, same names (`<job>-<number>`, `<job>-<number>-<attempt>`), another owner uid;
- objects someone made by hand, or another tool, with the job's labels.

A stranger is never adopted (its results never enter the study), counted, stopped or deleted; it is logged once.
Where it holds a name the job needs next, the job waits for it to go (the API server refuses the create).
"""

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ktune.operator.pods import controller_uid

log = logging.getLogger(__name__)


class Ownership:
    """One TuningJob's filter over what its label selector returns; remembers the strangers it logged."""

    def __init__(self) -> None:
        self._noted: set[str] = set()  # uids of strangers already logged: once each, however many passes see them
        self._announced: set[str] = set()  # uids of strangers an Event said the job waits for
        self._strangers: dict[str, dict[str, Any]] = {}  # name -> the strangers among the Trials last filtered

    def trials(self, job: Mapping[str, Any], trials: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """The Trials among `trials` that `job` (the TuningJob API object) controls."""
        uid = job["metadata"]["uid"]
        owned = []
        self._strangers = {}
        for trial in trials:
            if controller_uid(trial) == uid:
                owned.append(trial)
            else:
                self._note(job, "Trial", trial)
                self._strangers[trial["metadata"]["name"]] = trial
        return owned

    def announce_taken(self, job: Mapping[str, Any], name: str,
                       emit_event: Callable[[Mapping[str, Any], str, str, str], None]) -> None:
        """One Warning Event per holder when a stranger (among the Trials last filtered) holds `name`, the name of
        the job's next Trial: the API server refuses that creation, so the job waits, and this says for what."""
        holder = self._strangers.get(name)
        if holder is None or holder["metadata"].get("uid") in self._announced:
            return
        self._announced.add(holder["metadata"].get("uid") or name)
        deleting = " (being deleted)" if holder["metadata"].get("deletionTimestamp") else ""
        emit_event(job, "Warning", "TrialNameTaken",
                   f"Trial {name} exists{deleting} and is not this TuningJob's (its controller: "
                   f"{controller_uid(holder) or 'none'}): the next trial starts once it is gone. An earlier TuningJob "
                   "of the same name leaves its Trials until the garbage collector removes them; delete one made by "
                   "hand")

    def pods(self, job: Mapping[str, Any], owners: Mapping[int, Mapping[str, Any]],
             pods: Iterable[dict[str, Any]]) -> dict[str, tuple[int, dict[str, Any]]]:
        """Pod name -> (trial number, pod) of the pods among `pods` controlled by one of `owners` (trial number ->
        the job's Trial object)."""
        numbers = {owner["metadata"]["uid"]: number for number, owner in owners.items()}
        owned = {}
        for pod in pods:
            number = numbers.get(controller_uid(pod) or "")
            if number is None:
                self._note(job, "pod", pod)
            else:
                owned[pod["metadata"]["name"]] = (number, pod)
        return owned

    def _note(self, job: Mapping[str, Any], kind: str, stranger: Mapping[str, Any]) -> None:
        metadata = stranger["metadata"]
        uid = metadata.get("uid") or f"{kind}/{metadata['name']}"
        if uid in self._noted:
            return
        self._noted.add(uid)
        log.info("%s/%s: leaving %s %s alone: it carries this job's labels but its controller is %s, not this "
                 "TuningJob (uid %s) or one of its Trials (an earlier job of the same name's, not yet "
                 "garbage-collected, or made by someone else)", job["metadata"]["namespace"],
                 job["metadata"]["name"], kind, metadata["name"],
                 controller_uid(stranger) or "nobody", job["metadata"]["uid"])
