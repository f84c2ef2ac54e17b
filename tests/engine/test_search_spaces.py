"""Any valid search space works with every sampler: suggestions stay inside it (hypothesis)."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ktune.algorithms import load_tuningjob
from ktune.engine import Engine
from ktune.spec import SpecError

from .conftest import BASE_JOB
from .test_samplers import assert_fits


@st.composite
def parameter(draw: st.DrawFn, index: int) -> dict[str, Any]:
    name = f"p{index}"
    kind = draw(st.sampled_from(["float", "int", "categorical"]))
    if kind == "categorical":
        choices = draw(st.lists(st.integers(-5, 5) | st.sampled_from(["a", "b", "c"]) | st.booleans(),
                                min_size=1, max_size=4, unique_by=lambda v: (type(v), v)))
        return {"name": name, "type": kind, "choices": [c for i, c in enumerate(choices) if c not in choices[:i]]}
    low = draw(st.integers(-20, 20))
    steps = draw(st.integers(1, 12))
    if kind == "int":
        step = draw(st.integers(1, 3))
        return {"name": name, "type": kind, "low": low, "high": low + steps * step, "step": step}
    step = draw(st.sampled_from([0.1, 0.25, 0.05, 1.5]))
    if draw(st.booleans()):
        return {"name": name, "type": kind, "low": round(low * step, 9), "high": round((low + steps) * step, 9),
                "step": step}
    positive = draw(st.floats(1e-6, 10.0))
    return {"name": name, "type": kind, "low": positive, "high": positive * draw(st.floats(1.5, 1e4)), "log": True}


@st.composite
def job(draw: st.DrawFn) -> dict[str, Any]:
    raw = copy.deepcopy(BASE_JOB)
    count = draw(st.integers(1, 4))
    raw["spec"]["parameters"] = [draw(parameter(i)) for i in range(count)]
    raw["spec"]["sampler"] = {"name": draw(st.sampled_from(["tpe", "random", "grid", "qmc", "nsga2"])),
                              "seed": draw(st.integers(0, 2**32 - 1))}
    if raw["spec"]["sampler"]["name"] == "nsga2":
        raw["spec"]["sampler"]["options"] = {"population_size": 3}
    return raw


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(job())
def test_every_suggestion_fits_any_valid_search_space(raw: dict[str, Any]) -> None:
    try:
        spec = load_tuningjob(raw).spec
    except SpecError as error:  # a grid over a log-scale float, for one: refused with a reason
        assert error.problems
        return
    engine = Engine(spec)
    for i in range(6):
        if not engine.launchable(running=0, now=0.0):
            break
        record = engine.ask(now=0.0)
        assert_fits(record.params, spec)
        engine.tell_succeeded(record.number, {"ndcg_at_10": float(i % 3)})
