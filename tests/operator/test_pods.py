"""A trial's pod: the template with the trainer contract injected, owned by its Trial."""

from ktune import contract
from ktune.operator.pods import pod_attempt, trial_pod_manifest

TRIAL = {"apiVersion": "ktune.dev/v1alpha1", "kind": "Trial", "metadata": {"name": "job-3", "uid": "u-3"}}


def template(**container: object) -> dict:
    return {
        "metadata": {"labels": {"team": "search"}},
        "spec": {"containers": [{"name": "trainer", "image": "img", **container}, {"name": "sidecar", "image": "s"}]},
    }


def build(tmpl: dict | None = None, attempt: int = 2) -> dict:
    return trial_pod_manifest(tmpl or template(), "job", 3, {"lr": 0.01, "bs": 32}, attempt, 9100, TRIAL)


def env_of(container: dict) -> list[dict]:
    return container["env"]


def test_contract_env_comes_before_the_templates_own_env_so_references_resolve():
    pod = build(template(env=[{"name": "LR_FLAG", "value": "--lr=$(KTUNE_PARAM_LR)"}]))
    names = [var["name"] for var in env_of(pod["spec"]["containers"][0])]
    assert names.index("KTUNE_PARAM_LR") < names.index("LR_FLAG")
    values = {var["name"]: var.get("value") for var in env_of(pod["spec"]["containers"][0])}
    assert values["KTUNE_PARAM_LR"] == "0.01"
    assert values["KTUNE_PARAM_BS"] == "32"
    assert values[contract.ENV_TRIAL_NUMBER] == "3"
    assert values[contract.ENV_TUNINGJOB] == "job"
    assert values[contract.ENV_METRICS_PORT] == "9100"


def test_metrics_host_comes_from_the_pod_ip_through_the_downward_api():
    pod = build()
    host = next(var for var in env_of(pod["spec"]["containers"][0]) if var["name"] == contract.ENV_METRICS_HOST)
    assert host["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}


def test_pod_is_named_per_attempt_labelled_and_owned_by_its_trial():
    pod = build(attempt=2)
    assert pod["metadata"]["name"] == "job-3-2"
    assert pod["metadata"]["labels"] == {
        "team": "search", contract.LABEL_MANAGED_BY: "ktune", contract.LABEL_TUNINGJOB: "job", contract.LABEL_TRIAL: "3"
    }
    assert pod["metadata"]["ownerReferences"] == [{
        "apiVersion": "ktune.dev/v1alpha1", "kind": "Trial", "name": "job-3", "uid": "u-3",
        "controller": True, "blockOwnerDeletion": True,
    }]
    assert pod_attempt(pod) == 2


def test_only_the_trainer_container_gets_the_metrics_port_and_every_container_keeps_its_logs_on_error():
    pod = build()
    trainer, sidecar = pod["spec"]["containers"]
    assert {"name": "ktune-metrics", "containerPort": 9100, "protocol": "TCP"} in trainer["ports"]
    assert "ports" not in sidecar
    assert trainer["terminationMessagePolicy"] == sidecar["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert pod["spec"]["restartPolicy"] == "Never"


def test_secure_defaults_apply_where_the_template_is_silent_and_yield_where_it_speaks():
    pod = build(template(securityContext={"readOnlyRootFilesystem": False}))
    trainer, sidecar = pod["spec"]["containers"]
    assert trainer["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": False, "capabilities": {"drop": ["ALL"]}
    }
    assert sidecar["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["spec"]["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    mounts = {c["name"]: [m["mountPath"] for m in c.get("volumeMounts", [])] for c in pod["spec"]["containers"]}
    assert mounts == {"trainer": [], "sidecar": ["/tmp"]}


def test_the_template_given_is_not_modified():
    tmpl = template()
    build(tmpl)
    assert tmpl == template()


def test_init_containers_and_native_sidecars_get_the_container_defaults_and_a_writable_tmp():
    tmpl = template()
    tmpl["spec"]["initContainers"] = [
        {"name": "fetch", "image": "f"},
        {"name": "proxy", "image": "p", "restartPolicy": "Always",
         "securityContext": {"runAsUser": 1000, "capabilities": {"add": ["NET_BIND_SERVICE"]}}},
    ]
    pod = build(tmpl)
    fetch, proxy = pod["spec"]["initContainers"]
    assert fetch["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}
    }
    assert proxy["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsUser": 1000,
        "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
    }
    assert proxy["restartPolicy"] == "Always"
    every = [*pod["spec"]["initContainers"], *pod["spec"]["containers"]]
    assert all(c["volumeMounts"] == [{"name": "ktune-tmp", "mountPath": "/tmp"}] for c in every)
    assert pod["spec"]["volumes"] == [{"name": "ktune-tmp", "emptyDir": {}}]
    assert "env" not in fetch and "ports" not in proxy


def test_the_service_account_token_is_not_mounted_unless_the_template_sets_it_either_way():
    assert build()["spec"]["automountServiceAccountToken"] is False
    for given in (True, False):
        tmpl = template()
        tmpl["spec"]["automountServiceAccountToken"] = given
        assert build(tmpl)["spec"]["automountServiceAccountToken"] is given


def test_a_null_in_the_template_counts_as_unset_so_the_default_applies():
    tmpl = template(securityContext={"readOnlyRootFilesystem": None, "capabilities": None})
    tmpl["spec"].update(automountServiceAccountToken=None, securityContext={"runAsNonRoot": None})
    pod = build(tmpl)
    assert pod["spec"]["containers"][0]["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}
    }
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["automountServiceAccountToken"] is False
