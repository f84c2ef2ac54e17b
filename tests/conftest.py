"""Test-suite wide plugins: the real control plane fixtures (`cluster`, `node_agent`, `namespace`)."""

pytest_plugins = ["tests.cluster.fixtures"]
