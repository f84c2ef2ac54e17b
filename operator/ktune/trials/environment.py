"""The environment a trial receives under the trainer contract, the same for a pod and a local process."""

import json
from collections.abc import Mapping
from typing import Any

from ktune import contract


def param_value_text(value: Any) -> str:
    """How one parameter value is written into `KTUNE_PARAM_<NAME>` (booleans as YAML/JSON spell them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def contract_env(tuningjob: str, number: int, params: Mapping[str, Any]) -> dict[str, str]:
    """`KTUNE_PARAM_<NAME>` for every parameter, `KTUNE_TRIAL_PARAMS`, `KTUNE_TRIAL_NUMBER`, `KTUNE_TUNINGJOB`.

    The metrics address and result path are added by each backend: they differ between a pod and a process.
    """
    env = {contract.param_env_name(name): param_value_text(value) for name, value in params.items()}
    env[contract.ENV_TRIAL_PARAMS] = json.dumps(dict(params), sort_keys=True)
    env[contract.ENV_TRIAL_NUMBER] = str(number)
    env[contract.ENV_TUNINGJOB] = tuningjob
    return env
