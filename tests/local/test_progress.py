"""The live progress display: redrawn in place on a terminal, plain lines otherwise."""

import io

from ktune.local.progress import Progress, ProgressSnapshot


def snapshot(done: int, elapsed: float) -> ProgressSnapshot:
    return ProgressSnapshot(done=done, max_trials=4, running=1, succeeded=done, pruned=0, failed=0,
                            best="score=0.9 (trial 0)" if done else None, elapsed=elapsed)


def test_a_terminal_gets_one_status_line_redrawn_under_the_events():
    stream = io.StringIO()
    progress = Progress(stream, tty=True)
    progress.update(snapshot(0, 1))
    progress.event("trial 0 succeeded")
    progress.update(snapshot(1, 2))
    progress.close()
    text = stream.getvalue()
    assert text.count("\r\x1b[2K") >= 3
    assert "trial 0 succeeded\n" in text
    assert text.endswith("[0:00:02] trials 1/4 done · 1 running · 1 succeeded · 0 pruned · 0 failed · "
                         "best score=0.9 (trial 0)\n")


def test_a_pipe_gets_plain_lines_and_no_line_for_the_clock_alone():
    stream = io.StringIO()
    progress = Progress(stream, tty=False, plain_interval=0)
    progress.update(snapshot(0, 1))
    progress.update(snapshot(0, 2))  # only the clock moved
    progress.event("trial 0 succeeded")
    progress.update(snapshot(1, 3))
    progress.close()
    lines = stream.getvalue().splitlines()
    assert "\x1b" not in stream.getvalue() and "\r" not in stream.getvalue()
    assert lines == [
        "[0:00:01] trials 0/4 done · 1 running · 0 succeeded · 0 pruned · 0 failed · best none yet",
        "trial 0 succeeded",
        "[0:00:03] trials 1/4 done · 1 running · 1 succeeded · 0 pruned · 0 failed · best score=0.9 (trial 0)",
    ]
