"""The node agent's hosts files: the names cluster DNS and the kubelet would give a pod (no cluster needed)."""

from pathlib import Path

from tests.cluster.pod_dns import hosts_text, pod_hostname, write_in_place


def pod(name: str, ip: str | None, labels: dict[str, str], **spec: str) -> dict:
    status = {"podIP": ip} if ip else {}
    return {"metadata": {"name": name, "namespace": "ns", "labels": labels}, "spec": spec, "status": status}


def headless(name: str, selector: dict[str, str]) -> dict:
    return {"metadata": {"name": name}, "spec": {"clusterIP": "None", "selector": selector}}


def test_a_headless_service_resolves_to_the_ips_of_the_pods_it_selects() -> None:
    master = pod("job-master-0", "127.10.0.1", {"replica": "master"})
    worker = pod("job-worker-0", "127.10.0.2", {"replica": "worker"})
    pending = pod("job-worker-1", None, {"replica": "worker"})
    services = [
        headless("job-master-0", {"replica": "master"}),
        {"metadata": {"name": "with-ip"}, "spec": {"clusterIP": "10.0.0.7", "selector": {"replica": "master"}}},
        headless("no-selector", {}),
    ]
    lines = hosts_text(worker, services, [master, worker, pending]).splitlines()
    assert lines[0] == "127.0.0.1\tlocalhost"
    assert "127.10.0.2\tjob-worker-0" in lines
    assert "127.10.0.1\tjob-master-0 job-master-0.ns job-master-0.ns.svc job-master-0.ns.svc.cluster.local" in lines
    # A ClusterIP Service has no kube-proxy behind it here, a selector-less one no pods: neither resolves.
    assert not [line for line in lines if "with-ip" in line or "no-selector" in line]


def test_hostname_and_subdomain_give_the_pods_dns_name() -> None:
    member = pod("p", "127.10.0.3", {"app": "a"}, hostname="h", subdomain="group")
    lines = hosts_text(member, [headless("group", {"app": "a"})], [member]).splitlines()
    assert "127.10.0.3\th.group.ns.svc.cluster.local h" in lines
    # As a real pod's resolv.conf search path (<ns>.svc.cluster.local svc.cluster.local cluster.local) completes it.
    assert "127.10.0.3\th.group h.group.ns h.group.ns.svc h.group.ns.svc.cluster.local" in lines


def test_the_hosts_file_is_rewritten_in_place(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    write_in_place(hosts, "a long first version\n")
    inode = hosts.stat().st_ino
    write_in_place(hosts, "short\n")
    assert hosts.read_text() == "short\n"
    assert hosts.stat().st_ino == inode  # a bind mount of the file keeps seeing it


def test_a_pods_hostname_is_its_spec_hostname_or_its_name_cut_to_63_characters() -> None:
    assert pod_hostname(pod("p", None, {}, hostname="h")) == "h"
    assert pod_hostname(pod("a" * 62 + "-b", None, {})) == "a" * 62
