"""The node agent: what runs on this node (CRI sandboxes, containers, processes) joined with its pods' metadata.

Layout, one role per module (import-linter keeps the pure ones free of I/O):

* pure core: `settings` (every limit with its reason), `truncate` (long label values), `cgroup` (process cgroup
  paths to container and pod ids), `mirror` (the runtime's sandboxes and containers and how to keep them current),
  `metastore` (pod, namespace, owner and service metadata by uid), `join` (one enriched record per lookup);
* I/O edges: `procfs` (reads /proc/<pid>/cgroup under a host root), `runtime_sync` (relists, events, retries
  against a `nodemeta.cri.model.Runtime`), `stream_source` (the collector's nodemeta.v1 stream) and
  `direct_source` (node-scoped API watches through the collector's relation index), `changes` (bounded fan-out
  of CloudEvents), `http_api` (the unix-socket API, probes, metrics), `metrics`;
* `app` wires them into one process; `command` is the command line (`nodemeta agent run|lookup`).
"""
