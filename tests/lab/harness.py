"""A real containerd with real CNI networking, private to the test run: the lab the node agent is tested against.

    lab = ContainerdLab(tmp_dir)
    lab.start()
    sandbox = lab.run_pod("web-0", "default", "uid-1", labels={"app": "web"})
    container = lab.start_container(sandbox, "web")
    lab.in_pod_netns(sandbox, ["ip", "-o", "addr"])
    lab.close()

What it starts, and why each step:
- A holder process (`sleep`) in a new private mount namespace and a new network namespace. Inside it,
  /sys/fs/cgroup/unified is unmounted, because crun refuses to run on hybrid cgroup hosts otherwise; the host's
  mounts are never touched. The CNI bridge and every veth stay inside the lab's network namespace.
- containerd, entered into the holder's namespaces with nsenter, so it can be restarted while the pods (their shims,
  their netns bind mounts) live on. Its root, state, socket and CNI conf dir sit under the lab's directory; crun is
  the runtime binary (runc cannot start containers on this kind of host); negative oom_score_adj writes are
  refused here, hence `restrict_oom_score_adj`.
- A busybox OCI image built locally (`tests.lab.image`), imported with `ctr`, used as the sandbox image and as
  the workload image.
- A bridge + host-local conflist (IPv4 and IPv6) whose IPAM state also lives under the lab's directory.

The harness talks to containerd with the synchronous gRPC stub, so it works from fixtures and from async tests
alike (wrap calls in `asyncio.to_thread` where a test needs its event loop to keep running meanwhile).
`close()` removes every sandbox, stops containerd, kills what is left in the lab's mount namespace (shims,
containers) by pid, and removes the pod cgroups it caused; nothing stays mounted or running on the host.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from nodemeta.api.cri.runtime.v1 import api_pb2 as cri
from nodemeta.api.cri.runtime.v1 import api_pb2_grpc as cri_grpc
from tests.lab.image import IMAGE_NAME, build_busybox_image

__all__ = [
    "CNI_BIN_DIR",
    "IMAGE_NAME",
    "IPV4_SUBNET",
    "IPV6_SUBNET",
    "MESH_PLUGIN_TYPE",
    "ContainerdLab",
    "LabError",
    "PodSpec",
    "bridge_conflist",
    "missing_prerequisites",
]

CNI_BIN_DIR = Path("/usr/lib/cni")
# A chained plugin playing a service mesh's part (tests/cni/mesh_plugin.py), installed in the lab's bin dir.
MESH_PLUGIN_TYPE = "nodemeta-test-mesh"
MESH_PLUGIN_SOURCE = Path(__file__).resolve().parent.parent / "cni" / "mesh_plugin.py"
BUSYBOX = Path("/bin/busybox")
BINARIES = ("containerd", "containerd-shim-runc-v2", "ctr", "crun", "unshare", "nsenter", "ip", "iptables", "sleep")
CNI_PLUGINS = ("bridge", "host-local", "loopback", "portmap")
IPV4_SUBNET = "10.88.0.0/16"
IPV6_SUBNET = "fd00:88::/64"
NETWORK_NAME = "nodemeta-lab"
CONFLIST_NAME = "10-nodemeta-lab.conflist"
# Debian packages providing everything above; scripts/test installs them when they are missing.
PACKAGES = ("containerd", "runc", "crun", "containernetworking-plugins", "busybox-static", "iptables", "iproute2")

# Generous bounds: a loaded 2-core machine starts containerd in about a second and a pod in a fraction of one.
START_TIMEOUT = 30.0
CALL_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


class LabError(RuntimeError):
    """The lab could not do what was asked; the message says what and includes containerd's last log lines."""


def missing_prerequisites() -> list[str]:
    """What this machine lacks to run the lab (empty when it can)."""
    missing: list[str] = []
    if os.geteuid() != 0:
        missing.append("root (the lab creates namespaces and cgroups)")
    missing += [f"binary {name}" for name in BINARIES if shutil.which(name) is None]
    missing += [f"CNI plugin {CNI_BIN_DIR / name}" for name in CNI_PLUGINS if not (CNI_BIN_DIR / name).exists()]
    if not BUSYBOX.exists():
        missing.append(f"{BUSYBOX} (busybox-static)")
    elif b"ld-linux" in BUSYBOX.read_bytes()[:8192]:
        missing.append(f"a statically linked {BUSYBOX} (busybox-static)")
    if not Path("/sys/fs/cgroup").is_dir():
        missing.append("/sys/fs/cgroup")
    return missing


def bridge_conflist(data_dir: Path, *, ipv6: bool = True, name: str = NETWORK_NAME) -> dict[str, object]:
    """A bridge + host-local IPAM network (plus portmap), its allocations kept under `data_dir`."""
    ranges: list[list[dict[str, str]]] = [[{"subnet": IPV4_SUBNET}]]
    routes = [{"dst": "0.0.0.0/0"}]
    if ipv6:
        ranges.append([{"subnet": IPV6_SUBNET}])
        routes.append({"dst": "::/0"})
    return {
        "cniVersion": "1.0.0",
        "name": name,
        "plugins": [
            {
                "type": "bridge",
                "bridge": "nmlab0",
                "isGateway": True,
                "ipMasq": False,
                "ipam": {"type": "host-local", "ranges": ranges, "routes": routes, "dataDir": str(data_dir)},
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


@dataclass(frozen=True)
class PodSpec:
    """What the lab remembers of a pod it ran: enough to create containers in it and to clean up after it."""

    sandbox_id: str
    name: str
    namespace: str
    uid: str
    config: cri.PodSandboxConfig = field(repr=False)
    cgroup_parent: str = ""


def kubelet_cgroup_parent(uid: str, qos: str = "besteffort") -> str:
    """The cgroupfs-driver parent the kubelet gives a pod: /kubepods/<qos>/pod<uid> (guaranteed pods: no qos)."""
    return f"/kubepods/pod{uid}" if qos == "guaranteed" else f"/kubepods/{qos}/pod{uid}"


class ContainerdLab:
    """One containerd in private namespaces under `directory` (see the module docstring)."""

    def __init__(self, directory: Path, *, ipv6: bool = True) -> None:
        self.directory = directory
        self.ipv6 = ipv6
        self.socket = directory / "containerd.sock"
        self.conf_dir = directory / "cni" / "net.d"
        self.cni_data_dir = directory / "cni" / "ipam"
        # The runtime's CNI bin dir: links to the Debian plugins plus the lab's mesh plugin (`MESH_PLUGIN_TYPE`).
        self.bin_dir = directory / "cni" / "bin"
        self.config_path = directory / "containerd.toml"
        self.log_path = directory / "containerd.log"
        self.image = IMAGE_NAME
        self.pods: dict[str, PodSpec] = {}
        self._holder: subprocess.Popen[bytes] | None = None
        self._containerd: subprocess.Popen[bytes] | None = None
        self._channel: grpc.Channel | None = None
        self._stub: cri_grpc.RuntimeServiceStub | None = None
        self._cgroups: set[str] = set()
        self._netns_paths: set[str] = set()

    # ---- lifecycle

    @property
    def holder_pid(self) -> int:
        """A process in the lab's mount and network namespaces (nsenter -t this)."""
        if self._holder is None:
            raise LabError("the lab is not started")
        return self._holder.pid

    @property
    def containerd_pid(self) -> int:
        if self._containerd is None or self._containerd.poll() is not None:
            raise LabError("containerd is not running")
        return self._containerd.pid

    @property
    def containerd_running(self) -> bool:
        return self._containerd is not None and self._containerd.poll() is None

    @property
    def address(self) -> str:
        """The CRI endpoint as a gRPC target."""
        return f"unix://{self.socket}"

    def start(self) -> None:
        missing = missing_prerequisites()
        if missing:
            raise LabError("the containerd lab cannot run here; missing: " + ", ".join(missing))
        for sub in ("root", "state", "opt"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        self.cni_data_dir.mkdir(parents=True, exist_ok=True)
        self._install_plugins()
        self.write_conflist(bridge_conflist(self.cni_data_dir, ipv6=self.ipv6))
        self.config_path.write_text(self._containerd_config())
        self._start_holder()
        try:
            self._start_containerd()
            image = build_busybox_image(BUSYBOX, self.directory / "busybox-oci.tar")
            self._run(["ctr", "--address", str(self.socket), "-n", "k8s.io", "images", "import", str(image)])
        except BaseException:
            self.close()
            raise

    def _install_plugins(self) -> None:
        self.bin_dir.mkdir(parents=True, exist_ok=True)
        for plugin in CNI_BIN_DIR.iterdir():
            link = self.bin_dir / plugin.name
            if not link.exists():
                link.symlink_to(plugin)
        # The mesh plugin runs with this interpreter (the runtime execs it with its own environment).
        mesh = self.bin_dir / MESH_PLUGIN_TYPE
        mesh.write_text(f"#!{sys.executable}\n" + MESH_PLUGIN_SOURCE.read_text())
        mesh.chmod(0o755)

    def close(self) -> None:
        """Remove every sandbox, stop containerd and everything it started, and clean the host up after them."""
        if self._holder is None:
            return
        try:
            if self._containerd is not None and self._containerd.poll() is None:
                with contextlib.suppress(grpc.RpcError, LabError):
                    self.remove_all_pods()
        finally:
            self._close_channel()
            self._stop_containerd()
            self._kill_namespace_members()
            holder, self._holder = self._holder, None
            holder.kill()
            holder.wait()
            self._clean_host()

    def __enter__(self) -> ContainerdLab:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def restart_containerd(self, *, down: float = 0.0) -> None:
        """Stop containerd (SIGTERM), stay down for `down` seconds, start it again; the pods survive."""
        self._close_channel()
        self._stop_containerd()
        time.sleep(down)
        self._start_containerd()

    def stop_containerd(self) -> None:
        """Stop containerd and leave it down (until `start_containerd`)."""
        self._close_channel()
        self._stop_containerd()

    def start_containerd(self) -> None:
        self._start_containerd()

    # ---- CNI configuration

    def write_conflist(self, conflist: Mapping[str, object], name: str = CONFLIST_NAME) -> Path:
        """Write (atomically) a conflist into the conf dir; containerd reloads the dir when it changes."""
        path = self.conf_dir / name
        scratch = self.conf_dir / f".{name}.tmp"
        scratch.write_text(json.dumps(conflist, indent=2))
        scratch.rename(path)
        return path

    def default_conflist(self) -> dict[str, object]:
        return bridge_conflist(self.cni_data_dir, ipv6=self.ipv6)

    # ---- pods and containers

    @property
    def stub(self) -> cri_grpc.RuntimeServiceStub:
        if self._stub is None:
            # Proxies never apply to a unix socket, but a proxy variable in the environment must not be consulted.
            self._channel = grpc.insecure_channel(self.address, options=[("grpc.enable_http_proxy", 0)])
            self._stub = cri_grpc.RuntimeServiceStub(self._channel)
        return self._stub

    def run_pod(
        self,
        name: str,
        namespace: str = "default",
        uid: str = "",
        *,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        host_network: bool = False,
        host_pid: bool = False,
        host_ipc: bool = False,
        cgroup_parent: str | None = None,
        privileged: bool = False,
        attempt: int = 0,
    ) -> str:
        """Run a pod sandbox the way the kubelet does and return its id.

        `uid` defaults to a fresh uuid-like value. `cgroup_parent` defaults to the kubelet's cgroupfs parent
        (/kubepods/besteffort/pod<uid>); pass "" for none (the runtime then uses /k8s.io/<id>). Privileged
        containers need a privileged sandbox (`privileged=True`).
        """
        uid = uid or _fresh_uid()
        parent = kubelet_cgroup_parent(uid) if cgroup_parent is None else cgroup_parent
        node, pod = cri.NamespaceMode.NODE, cri.NamespaceMode.POD
        config = cri.PodSandboxConfig(
            metadata=cri.PodSandboxMetadata(name=name, uid=uid, namespace=namespace, attempt=attempt),
            hostname=name if not host_network else "",
            labels={
                **(labels or {}),
                "io.kubernetes.pod.name": name,
                "io.kubernetes.pod.namespace": namespace,
                "io.kubernetes.pod.uid": uid,
            },
            annotations=dict(annotations or {}),
            linux=cri.LinuxPodSandboxConfig(
                cgroup_parent=parent,
                security_context=cri.LinuxSandboxSecurityContext(
                    namespace_options=cri.NamespaceOption(
                        network=node if host_network else pod,
                        pid=node if host_pid else pod,
                        ipc=node if host_ipc else pod,
                    ),
                    privileged=privileged,
                ),
            ),
        )
        sandbox_id: str = self.stub.RunPodSandbox(
            cri.RunPodSandboxRequest(config=config), timeout=CALL_TIMEOUT
        ).pod_sandbox_id
        self.pods[sandbox_id] = PodSpec(sandbox_id, name, namespace, uid, config, parent)
        if parent:
            self._cgroups.add(parent)
        netns = self.sandbox_netns_path(sandbox_id)
        if netns:
            self._netns_paths.add(netns)
        return sandbox_id

    def create_container(
        self,
        sandbox_id: str,
        name: str,
        command: Sequence[str] = (),
        *,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        envs: Mapping[str, str] | None = None,
        privileged: bool = False,
        run_as_user: int | None = None,
        attempt: int = 0,
    ) -> str:
        """Create (not start) a container in a pod run by this lab, with the kubelet's io.kubernetes.* labels."""
        pod = self.pods[sandbox_id]
        security = cri.LinuxContainerSecurityContext(privileged=privileged)
        if run_as_user is not None:
            security.run_as_user.value = run_as_user
        config = cri.ContainerConfig(
            metadata=cri.ContainerMetadata(name=name, attempt=attempt),
            image=cri.ImageSpec(image=self.image),
            command=list(command),
            envs=[cri.KeyValue(key=k, value=v) for k, v in (envs or {}).items()],
            labels={
                **(labels or {}),
                "io.kubernetes.pod.name": pod.name,
                "io.kubernetes.pod.namespace": pod.namespace,
                "io.kubernetes.pod.uid": pod.uid,
                "io.kubernetes.container.name": name,
            },
            annotations=dict(annotations or {}),
            linux=cri.LinuxContainerConfig(security_context=security),
        )
        request = cri.CreateContainerRequest(pod_sandbox_id=sandbox_id, config=config, sandbox_config=pod.config)
        container_id: str = self.stub.CreateContainer(request, timeout=CALL_TIMEOUT).container_id
        return container_id

    def start_container(self, sandbox_id: str, name: str, command: Sequence[str] = (), **kwargs: object) -> str:
        """Create and start a container (default command: the image's long sleep); return its id."""
        container_id = self.create_container(sandbox_id, name, command, **kwargs)  # type: ignore[arg-type]
        self.stub.StartContainer(cri.StartContainerRequest(container_id=container_id), timeout=CALL_TIMEOUT)
        return container_id

    def stop_container(self, container_id: str, timeout: int = 0) -> None:
        self.stub.StopContainer(
            cri.StopContainerRequest(container_id=container_id, timeout=timeout), timeout=CALL_TIMEOUT
        )

    def remove_container(self, container_id: str) -> None:
        """Stop (kill) and remove a container."""
        self.stop_container(container_id)
        self.stub.RemoveContainer(cri.RemoveContainerRequest(container_id=container_id), timeout=CALL_TIMEOUT)

    def stop_pod(self, sandbox_id: str) -> None:
        self.stub.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=sandbox_id), timeout=CALL_TIMEOUT)

    def remove_pod(self, sandbox_id: str) -> None:
        """Stop and remove a sandbox with all its containers (as the kubelet does when a pod goes away)."""
        self.stop_pod(sandbox_id)
        self.stub.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id), timeout=CALL_TIMEOUT)
        self.pods.pop(sandbox_id, None)

    def remove_all_pods(self) -> None:
        """Remove every sandbox containerd knows in the lab (not only those this object ran)."""
        listed = self.stub.ListPodSandbox(cri.ListPodSandboxRequest(), timeout=CALL_TIMEOUT)
        for item in listed.items:
            self.remove_pod(item.id)
        self.pods.clear()

    # ---- looking into containerd and its pods

    def status_info(self) -> dict[str, str]:
        """containerd's verbose Status info (keys cniconfig, lastCNILoadStatus, config, ...)."""
        return dict(self.stub.Status(cri.StatusRequest(verbose=True), timeout=CALL_TIMEOUT).info)

    def cni_config(self) -> str:
        """The CNI configuration containerd has loaded, as the JSON text it reports."""
        return self.status_info().get("cniconfig", "{}")

    def sandbox_info(self, sandbox_id: str) -> dict[str, object]:
        """containerd's verbose info document for a sandbox (parsed JSON)."""
        request = cri.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id, verbose=True)
        response = self.stub.PodSandboxStatus(request, timeout=CALL_TIMEOUT)
        info: dict[str, object] = json.loads(response.info.get("info", "{}"))
        return info

    def sandbox_pid(self, sandbox_id: str) -> int:
        pid = self.sandbox_info(sandbox_id).get("pid", 0)
        if not isinstance(pid, int) or pid <= 0:
            raise LabError(f"sandbox {sandbox_id} has no running pause process")
        return pid

    def sandbox_netns_path(self, sandbox_id: str) -> str:
        """The pod's netns bind mount (it exists only inside the lab's mount namespace); "" for host network."""
        spec = self.sandbox_info(sandbox_id).get("runtimeSpec")
        namespaces = (spec or {}).get("linux", {}).get("namespaces", []) if isinstance(spec, dict) else []
        for namespace in namespaces:
            if namespace.get("type") == "network":
                return str(namespace.get("path", ""))
        return ""

    def container_pid(self, container_id: str) -> int:
        request = cri.ContainerStatusRequest(container_id=container_id, verbose=True)
        response = self.stub.ContainerStatus(request, timeout=CALL_TIMEOUT)
        pid = json.loads(response.info.get("info", "{}")).get("pid", 0)
        if not isinstance(pid, int) or pid <= 0:
            raise LabError(f"container {container_id} has no running process")
        return pid

    def in_lab(self, argv: Sequence[str], *, check: bool = True, net: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a command in the lab's mount namespace (and, with `net`, its network namespace: the bridge side)."""
        flags = ["-m", "-n"] if net else ["-m"]
        return self._run(["nsenter", "-t", str(self.holder_pid), *flags, "--", *argv], check=check)

    def in_pod_netns(
        self, sandbox_id: str, argv: Sequence[str], *, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a host command (iptables, ip, ...) in a pod's network namespace, inside the lab's mount namespace."""
        pid = self.sandbox_pid(sandbox_id)
        return self._run(
            ["nsenter", "-t", str(self.holder_pid), "-m", f"--net=/proc/{pid}/ns/net", "--", *argv], check=check
        )

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # ---- internals

    def _containerd_config(self) -> str:
        d = self.directory
        cri_plugin = 'plugins."io.containerd.grpc.v1.cri"'
        return f"""version = 2
root = "{d / "root"}"
state = "{d / "state"}"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp",
]

[grpc]
  address = "{self.socket}"

[ttrpc]
  address = "{self.socket}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{d / "opt"}"

[{cri_plugin}]
  sandbox_image = "{self.image}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false

[{cri_plugin}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri_plugin}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri_plugin}.containerd.runtimes.runc.options]
  BinaryName = "{shutil.which("crun")}"

[{cri_plugin}.cni]
  bin_dir = "{self.bin_dir}"
  conf_dir = "{self.conf_dir}"
  max_conf_num = 1
"""

    def _start_holder(self) -> None:
        # unshare execs sh, which execs sleep: the holder's pid is the Popen pid, and it holds both namespaces.
        script = (
            "set -e; if mountpoint -q /sys/fs/cgroup/unified; then umount /sys/fs/cgroup/unified; fi; "
            "ip link set lo up; exec sleep infinity"
        )
        self._holder = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "-n", "--", "sh", "-c", script],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self._holder.poll() is not None:
                raise LabError(f"the namespace holder exited with {self._holder.returncode}")
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{self._holder.pid}/exe").endswith("sleep"):
                    return
            if time.monotonic() > deadline:
                raise LabError("the namespace holder did not start")
            time.sleep(0.02)

    def _start_containerd(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()
        log = self.log_path.open("ab")
        try:
            self._containerd = subprocess.Popen(
                ["nsenter", "-t", str(self.holder_pid), "-m", "-n", "--",
                 "containerd", "--config", str(self.config_path), "--log-level", "info"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )  # fmt: skip
        finally:
            log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self._containerd.poll() is not None:
                raise LabError(f"containerd exited with {self._containerd.returncode}:\n{self.log_tail()}")
            if self.socket.exists():
                try:
                    status = self.stub.Status(cri.StatusRequest(), timeout=1.0)
                    if any(c.type == "RuntimeReady" and c.status for c in status.status.conditions):
                        return
                except grpc.RpcError:
                    pass
            if time.monotonic() > deadline:
                raise LabError(f"containerd did not become ready:\n{self.log_tail()}")
            time.sleep(0.05)

    def _stop_containerd(self) -> None:
        process, self._containerd = self._containerd, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _close_channel(self) -> None:
        channel, self._channel, self._stub = self._channel, None, None
        if channel is not None:
            channel.close()

    def _kill_namespace_members(self) -> None:
        """SIGKILL what the lab started and is still alive: every process in its mount namespace other than the
        holder (containerd, shims) and their descendants (the containers, which have mount namespaces of their
        own and are re-parented to the shims)."""
        if self._holder is None:
            return
        try:
            ours = os.readlink(f"/proc/{self._holder.pid}/ns/mnt")
        except OSError:
            return
        for _ in range(100):
            members = _lab_processes(ours, self._holder.pid)
            if not members:
                return
            for pid in members:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)

    def _clean_host(self) -> None:
        """Remove the pod cgroups and netns files the lab caused (only empty ones, only its own)."""
        root = Path("/sys/fs/cgroup")
        for parent in sorted(self._cgroups, key=len, reverse=True):
            for hierarchy in root.iterdir():
                group = hierarchy / parent.lstrip("/")
                with contextlib.suppress(OSError):
                    for child in sorted(group.glob("*/"), reverse=True):
                        if child.is_dir():
                            child.rmdir()
                    group.rmdir()
        for path in self._netns_paths:
            with contextlib.suppress(OSError):
                if os.path.getsize(path) == 0 and not os.path.ismount(path):
                    os.unlink(path)

    def _run(self, argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(list(argv), capture_output=True, text=True, timeout=CALL_TIMEOUT, check=False)
        if check and result.returncode != 0:
            raise LabError(f"{' '.join(argv)} failed with {result.returncode}: {result.stderr.strip()}")
        return result


def _lab_processes(mnt_ns: str, holder: int) -> list[int]:
    """Processes in the mount namespace `mnt_ns` (except `holder`) and all their descendants, children first."""
    parents: dict[int, int] = {}
    roots: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            parents[pid] = int(stat.rsplit(")", 1)[1].split()[1])
            if pid != holder and os.readlink(f"/proc/{pid}/ns/mnt") == mnt_ns:
                roots.append(pid)
        except (OSError, ValueError, IndexError):
            continue
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    found: list[int] = []
    stack = list(roots)
    while stack:
        pid = stack.pop()
        if pid in found or pid == holder:
            continue
        found.append(pid)
        stack.extend(children.get(pid, ()))
    return found[::-1]


def _fresh_uid() -> str:
    import uuid

    return str(uuid.uuid4())
