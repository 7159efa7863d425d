"""The Kubernetes Container Runtime Interface, as nodemeta speaks it."""
