"""The container runtime (CRI `runtime.v1`) as the node agent sees it: a pure model and an async gRPC client."""
