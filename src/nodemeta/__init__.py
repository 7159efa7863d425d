"""nodemeta: Kubernetes pod metadata for node agents."""

__version__ = "0.1.0"
