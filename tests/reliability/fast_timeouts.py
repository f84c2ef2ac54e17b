"""Operator settings for the reliability tests: stuck attempts end within a test's patience."""

# Short bounds so that stuck attempts end within a test's patience (the defaults are minutes). The metrics
# timeout stays above the time a node needs to report a finished pod after a control-plane restart: a
# trainer that exited while kube-apiserver was down still shows Running for a while, with nobody answering.
FAST_TIMEOUTS = {
    "KTUNE_OPERATOR_METRICS_UNAVAILABLE_TIMEOUT_SECONDS": "30",
    "KTUNE_OPERATOR_LOST_POD_TIMEOUT_SECONDS": "5",
    "KTUNE_OPERATOR_UNSCHEDULABLE_TIMEOUT_SECONDS": "5",
}
