"""Names shared by every part of ktune: API group, labels, and the trainer contract's variables.

One source of truth for these strings (see ARCHITECTURE.md, "Names" and "the trainer contract").
"""

API_GROUP = "ktune.dev"
API_VERSION = "v1alpha1"
TUNINGJOB_KIND = "TuningJob"
TUNINGJOB_PLURAL = "tuningjobs"
TRIAL_KIND = "Trial"
TRIAL_PLURAL = "trials"

LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "ktune"
LABEL_TUNINGJOB = "ktune.dev/tuningjob"
LABEL_TRIAL = "ktune.dev/trial"

ENV_PARAM_PREFIX = "KTUNE_PARAM_"
ENV_TRIAL_PARAMS = "KTUNE_TRIAL_PARAMS"
ENV_TRIAL_NUMBER = "KTUNE_TRIAL_NUMBER"
ENV_TUNINGJOB = "KTUNE_TUNINGJOB"
ENV_METRICS_HOST = "KTUNE_METRICS_HOST"
ENV_METRICS_PORT = "KTUNE_METRICS_PORT"
ENV_RESULT_PATH = "KTUNE_RESULT_PATH"

TRIAL_METRIC_GAUGE = "ktune_trial_metric"
TRIAL_STEP_GAUGE = "ktune_trial_step"
DEFAULT_METRICS_PORT = 9100
TERMINATION_LOG = "/dev/termination-log"
KATIB_DEFAULT_FILTER = r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)"
"""Katib's default StdOut metrics filter, for `metricsSource: {type: logs}`: group 1 a metric's name, group 2 its
value (`accuracy=0.91`)."""
DEFAULT_STEP_METRIC = "step"


def param_env_name(parameter: str) -> str:
    """The environment variable that carries one parameter: `KTUNE_PARAM_<NAME>` upper-cased."""
    return ENV_PARAM_PREFIX + parameter.upper()
