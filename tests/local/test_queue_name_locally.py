"""`ktune run` of a job whose trials wait in a Kueue queue on a cluster: the queue is ignored, and said so."""

import copy
import io
from pathlib import Path

from ktune.algorithms import load_tuningjob
from ktune.engine import TrialState
from ktune.local.progress import Progress
from ktune.local.runner import LocalRunner, LocalRunOptions

from .jobs import stand_in_manifest


def test_a_queued_job_trial_runs_at_once_with_one_note_that_the_queue_is_for_clusters(tmp_path: Path):
    manifest = copy.deepcopy(stand_in_manifest(max_trials=1, parallelism=1))
    template = manifest["spec"]["trial"].pop("template")
    manifest["spec"]["trial"]["resource"] = {"apiVersion": "batch/v1", "kind": "Job",
                                             "spec": {"parallelism": 1, "template": template}}
    manifest["spec"]["trial"]["queueName"] = "gpu-trials"
    output = io.StringIO()
    options = LocalRunOptions(output_dir=tmp_path / "run", resume=False, scrape_interval=0.1, grace_period=2.0,
                              poll_interval=0.05)
    outcome = LocalRunner(load_tuningjob(manifest), options, Progress(output, tty=False)).run()
    assert [record.state for record in outcome.records] == [TrialState.SUCCEEDED]
    notes = [line for line in output.getvalue().splitlines() if "queueName" in line]
    assert len(notes) == 1 and "gpu-trials is for clusters with Kueue; ktune run starts each trial at once" in notes[0]
