"""Known fields of the API types the simulator serves, for `fieldValidation` (unknown-field detection).

kube-apiserver decodes request bodies into its Go types with a strict JSON decoder; every key that matches no
struct field (matching is case-sensitive) is an "unknown field". With `fieldValidation=Strict` the request
fails with 400 and the message `<Kind> in version "<v>" cannot be handled as a <Kind>: strict decoding error:
unknown field "spec.replica", unknown field "..."`; with `Warn` (the server's default) each one becomes a
`Warning: 299` header reading `unknown field "spec.replica"`; `Ignore` drops them silently. Paths are dotted,
list elements carry their index (`spec.template.spec.containers[0].imagee`), and they come in document order.
Only the unknown key itself is reported, never what lies beneath it.

The field lists below follow the k8s.io/api v0.32 types (kube-apiserver 1.32), written as data: a node is a
dict from JSON field name to its child node, where `None` means "anything goes below this name" -- a scalar, a
map with free-form keys (labels, annotations, ConfigMap data, resource lists, selectors as maps), raw data, or
a subtree left unchecked. A struct-typed field applies to each element when its value is a list. ObjectMeta,
PodSpec (containers, probes, security contexts, volumes with every volume source), Service spec and every
kind's spec are complete; `status` is checked one level deep. Pass whole objects: for PATCH, the patched
result.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, TypeAlias

Fields: TypeAlias = "dict[str, Fields | None]"


def _f(names: str = "", **children: Fields) -> Fields:
    """A struct: space-separated names of fields with no structure to check, plus structured children."""
    node: Fields = dict.fromkeys(names.split())
    node.update(children)
    return node


# --- meta/v1 ------------------------------------------------------------------------------------------------
OBJECT_META: Final = _f(
    "annotations creationTimestamp deletionGracePeriodSeconds deletionTimestamp finalizers generateName "
    "generation labels name namespace resourceVersion selfLink uid",
    managedFields=_f("apiVersion fieldsType fieldsV1 manager operation subresource time"),
    ownerReferences=_f("apiVersion blockOwnerDeletion controller kind name uid"),
)
LABEL_SELECTOR: Final = _f("matchLabels", matchExpressions=_f("key operator values"))

# --- core/v1 building blocks -------------------------------------------------------------------------------
OBJECT_REFERENCE: Final = _f("apiVersion fieldPath kind name namespace resourceVersion uid")
_LOCAL_REF = _f("name")
_KEY_TO_PATH = _f("key mode path")
_FIELD_REF = _f("apiVersion fieldPath")
_RESOURCE_FIELD_REF = _f("containerName divisor resource")
_DOWNWARD_FILE = _f("mode path", fieldRef=_FIELD_REF, resourceFieldRef=_RESOURCE_FIELD_REF)
_SE_LINUX = _f("level role type user")
_SECCOMP = _f("localhostProfile type")
_APPARMOR = _f("localhostProfile type")
_WINDOWS = _f("gmsaCredentialSpec gmsaCredentialSpecName hostProcess runAsUserName")

_EXEC = _f("command")
_HTTP_GET = _f("host path port scheme", httpHeaders=_f("name value"))
_TCP_SOCKET = _f("host port")
_PROBE = _f(
    "failureThreshold initialDelaySeconds periodSeconds successThreshold terminationGracePeriodSeconds "
    "timeoutSeconds",
    exec=_EXEC, grpc=_f("port service"), httpGet=_HTTP_GET, tcpSocket=_TCP_SOCKET,
)  # fmt: skip
_LIFECYCLE_HANDLER = _f(exec=_EXEC, httpGet=_HTTP_GET, sleep=_f("seconds"), tcpSocket=_TCP_SOCKET)
RESOURCE_REQUIREMENTS: Final = _f("limits requests", claims=_f("name request"))
SECURITY_CONTEXT: Final = _f(
    "allowPrivilegeEscalation privileged procMount readOnlyRootFilesystem runAsGroup runAsNonRoot runAsUser",
    appArmorProfile=_APPARMOR, capabilities=_f("add drop"), seLinuxOptions=_SE_LINUX,
    seccompProfile=_SECCOMP, windowsOptions=_WINDOWS,
)  # fmt: skip

_CONTAINER_COMMON = _f(
    "args command image imagePullPolicy name restartPolicy stdin stdinOnce terminationMessagePath "
    "terminationMessagePolicy tty workingDir",
    env=_f(
        "name value",
        valueFrom=_f(
            configMapKeyRef=_f("key name optional"), fieldRef=_FIELD_REF,
            resourceFieldRef=_RESOURCE_FIELD_REF, secretKeyRef=_f("key name optional"),
        ),
    ),
    envFrom=_f("prefix", configMapRef=_f("name optional"), secretRef=_f("name optional")),
    lifecycle=_f(postStart=_LIFECYCLE_HANDLER, preStop=_LIFECYCLE_HANDLER),
    livenessProbe=_PROBE, readinessProbe=_PROBE, startupProbe=_PROBE,
    ports=_f("containerPort hostIP hostPort name protocol"),
    resizePolicy=_f("resourceName restartPolicy"),
    resources=RESOURCE_REQUIREMENTS,
    securityContext=SECURITY_CONTEXT,
    volumeDevices=_f("devicePath name"),
    volumeMounts=_f("mountPath mountPropagation name readOnly recursiveReadOnly subPath subPathExpr"),
)  # fmt: skip
CONTAINER: Final = _CONTAINER_COMMON
EPHEMERAL_CONTAINER: Final = {**_CONTAINER_COMMON, "targetContainerName": None}

PVC_SPEC: Final = _f(
    "accessModes storageClassName volumeAttributesClassName volumeMode volumeName",
    dataSource=_f("apiGroup kind name"), dataSourceRef=_f("apiGroup kind name namespace"),
    resources=_f("limits requests"), selector=LABEL_SELECTOR,
)  # fmt: skip
VOLUME: Final = _f(
    "name",
    awsElasticBlockStore=_f("fsType partition readOnly volumeID"),
    azureDisk=_f("cachingMode diskName diskURI fsType kind readOnly"),
    azureFile=_f("readOnly secretName shareName"),
    cephfs=_f("monitors path readOnly secretFile user", secretRef=_LOCAL_REF),
    cinder=_f("fsType readOnly volumeID", secretRef=_LOCAL_REF),
    configMap=_f("defaultMode name optional", items=_KEY_TO_PATH),
    csi=_f("driver fsType readOnly volumeAttributes", nodePublishSecretRef=_LOCAL_REF),
    downwardAPI=_f("defaultMode", items=_DOWNWARD_FILE),
    emptyDir=_f("medium sizeLimit"),
    ephemeral=_f(volumeClaimTemplate=_f(metadata=OBJECT_META, spec=PVC_SPEC)),
    fc=_f("fsType lun readOnly targetWWNs wwids"),
    flexVolume=_f("driver fsType options readOnly", secretRef=_LOCAL_REF),
    flocker=_f("datasetName datasetUUID"),
    gcePersistentDisk=_f("fsType partition pdName readOnly"),
    gitRepo=_f("directory repository revision"),
    glusterfs=_f("endpoints path readOnly"),
    hostPath=_f("path type"),
    image=_f("pullPolicy reference"),
    iscsi=_f(
        "chapAuthDiscovery chapAuthSession fsType initiatorName iqn iscsiInterface lun portals readOnly targetPortal",
        secretRef=_LOCAL_REF,
    ),
    nfs=_f("path readOnly server"),
    persistentVolumeClaim=_f("claimName readOnly"),
    photonPersistentDisk=_f("fsType pdID"),
    portworxVolume=_f("fsType readOnly volumeID"),
    projected=_f(
        "defaultMode",
        sources=_f(
            clusterTrustBundle=_f("name optional path signerName", labelSelector=LABEL_SELECTOR),
            configMap=_f("name optional", items=_KEY_TO_PATH),
            downwardAPI=_f(items=_DOWNWARD_FILE),
            secret=_f("name optional", items=_KEY_TO_PATH),
            serviceAccountToken=_f("audience expirationSeconds path"),
        ),
    ),
    quobyte=_f("group readOnly registry tenant user volume"),
    rbd=_f("fsType image keyring monitors pool readOnly user", secretRef=_LOCAL_REF),
    scaleIO=_f(
        "fsType gateway protectionDomain readOnly sslEnabled storageMode storagePool system volumeName",
        secretRef=_LOCAL_REF,
    ),
    secret=_f("defaultMode optional secretName", items=_KEY_TO_PATH),
    storageos=_f("fsType readOnly volumeName volumeNamespace", secretRef=_LOCAL_REF),
    vsphereVolume=_f("fsType storagePolicyID storagePolicyName volumePath"),
)

_NODE_SELECTOR_TERM = _f(matchExpressions=_f("key operator values"), matchFields=_f("key operator values"))
_POD_AFFINITY_TERM = _f(
    "matchLabelKeys mismatchLabelKeys namespaces topologyKey",
    labelSelector=LABEL_SELECTOR, namespaceSelector=LABEL_SELECTOR,
)  # fmt: skip
_POD_AFFINITY = _f(
    preferredDuringSchedulingIgnoredDuringExecution=_f("weight", podAffinityTerm=_POD_AFFINITY_TERM),
    requiredDuringSchedulingIgnoredDuringExecution=_POD_AFFINITY_TERM,
)
POD_SPEC: Final = _f(
    "activeDeadlineSeconds automountServiceAccountToken dnsPolicy enableServiceLinks hostIPC hostNetwork "
    "hostPID hostUsers hostname nodeName nodeSelector overhead preemptionPolicy priority priorityClassName "
    "restartPolicy runtimeClassName schedulerName serviceAccount serviceAccountName setHostnameAsFQDN "
    "shareProcessNamespace subdomain terminationGracePeriodSeconds",
    affinity=_f(
        nodeAffinity=_f(
            preferredDuringSchedulingIgnoredDuringExecution=_f("weight", preference=_NODE_SELECTOR_TERM),
            requiredDuringSchedulingIgnoredDuringExecution=_f(nodeSelectorTerms=_NODE_SELECTOR_TERM),
        ),
        podAffinity=_POD_AFFINITY,
        podAntiAffinity=_POD_AFFINITY,
    ),
    containers=CONTAINER,
    dnsConfig=_f("nameservers searches", options=_f("name value")),
    ephemeralContainers=EPHEMERAL_CONTAINER,
    hostAliases=_f("hostnames ip"),
    imagePullSecrets=_LOCAL_REF,
    initContainers=CONTAINER,
    os=_f("name"),
    readinessGates=_f("conditionType"),
    resourceClaims=_f("name resourceClaimName resourceClaimTemplateName"),
    resources=RESOURCE_REQUIREMENTS,
    schedulingGates=_f("name"),
    securityContext=_f(
        "fsGroup fsGroupChangePolicy runAsGroup runAsNonRoot runAsUser seLinuxChangePolicy "
        "supplementalGroups supplementalGroupsPolicy",
        appArmorProfile=_APPARMOR, seLinuxOptions=_SE_LINUX, seccompProfile=_SECCOMP,
        sysctls=_f("name value"), windowsOptions=_WINDOWS,
    ),
    tolerations=_f("effect key operator tolerationSeconds value"),
    topologySpreadConstraints=_f(
        "matchLabelKeys maxSkew minDomains nodeAffinityPolicy nodeTaintsPolicy topologyKey whenUnsatisfiable",
        labelSelector=LABEL_SELECTOR,
    ),
    volumes=VOLUME,
)  # fmt: skip
POD_TEMPLATE_SPEC: Final = _f(metadata=OBJECT_META, spec=POD_SPEC)

SERVICE_SPEC: Final = _f(
    "allocateLoadBalancerNodePorts clusterIP clusterIPs externalIPs externalName externalTrafficPolicy "
    "healthCheckNodePort internalTrafficPolicy ipFamilies ipFamilyPolicy loadBalancerClass loadBalancerIP "
    "loadBalancerSourceRanges publishNotReadyAddresses selector sessionAffinity trafficDistribution type",
    ports=_f("appProtocol name nodePort port protocol targetPort"),
    sessionAffinityConfig=_f(clientIP=_f("timeoutSeconds")),
)


def _kind(spec: Fields | None = None, status: str | None = None, **fields: Fields | None) -> Fields:
    """A top-level kind: TypeMeta and metadata, plus spec and a one-level status when given."""
    node: Fields = {"apiVersion": None, "kind": None, "metadata": OBJECT_META}
    if spec is not None:
        node["spec"] = spec
    if status is not None:
        node["status"] = _f(status)
    node.update(fields)
    return node


JOB_SPEC: Final = _f(
    "activeDeadlineSeconds backoffLimit backoffLimitPerIndex completionMode completions managedBy "
    "manualSelector maxFailedIndexes parallelism podReplacementPolicy suspend ttlSecondsAfterFinished",
    podFailurePolicy=_f(
        rules=_f(
            "action",
            onExitCodes=_f("containerName operator values"),
            onPodConditions=_f("status type"),
        )
    ),
    selector=LABEL_SELECTOR,
    successPolicy=_f(rules=_f("succeededCount succeededIndexes")),
    template=POD_TEMPLATE_SPEC,
)
_PVC = _kind(
    PVC_SPEC,
    "accessModes allocatedResourceStatuses allocatedResources capacity conditions "
    "currentVolumeAttributesClassName modifyVolumeStatus phase",
)
_EVENT_SERIES = _f("count lastObservedTime")
_EVENT_SOURCE = _f("component host")
_CONDITIONS_REPLICAS = "availableReplicas conditions observedGeneration readyReplicas replicas"

KINDS: Final[dict[str, Fields]] = {
    "Namespace": _kind(_f("finalizers"), "conditions phase"),
    "Node": _kind(
        _f(
            "externalID podCIDR podCIDRs providerID unschedulable",
            configSource=_f(configMap=_f("kubeletConfigKey name namespace resourceVersion uid")),
            taints=_f("effect key timeAdded value"),
        ),
        "addresses allocatable capacity conditions config daemonEndpoints features images nodeInfo phase "
        "runtimeHandlers volumesAttached volumesInUse",
    ),
    "Pod": _kind(
        POD_SPEC,
        "conditions containerStatuses ephemeralContainerStatuses hostIP hostIPs initContainerStatuses "
        "message nominatedNodeName phase podIP podIPs qosClass reason resize resourceClaimStatuses startTime",
    ),
    "Service": _kind(SERVICE_SPEC, "conditions loadBalancer"),
    "ReplicationController": _kind(
        _f("minReadySeconds replicas selector", template=POD_TEMPLATE_SPEC),
        _CONDITIONS_REPLICAS + " fullyLabeledReplicas",
    ),
    "Event": _kind(
        None,
        None,
        **_f(
            "action count eventTime firstTimestamp lastTimestamp message reason reportingComponent "
            "reportingInstance type",
            involvedObject=OBJECT_REFERENCE,
            related=OBJECT_REFERENCE,
            series=_EVENT_SERIES,
            source=_EVENT_SOURCE,
        ),
    ),
    "ConfigMap": _kind(None, None, binaryData=None, data=None, immutable=None),
    "ServiceAccount": _kind(
        None, None, automountServiceAccountToken=None, imagePullSecrets=_LOCAL_REF, secrets=OBJECT_REFERENCE
    ),
    "Deployment": _kind(
        _f(
            "minReadySeconds paused progressDeadlineSeconds replicas revisionHistoryLimit",
            selector=LABEL_SELECTOR,
            strategy=_f("type", rollingUpdate=_f("maxSurge maxUnavailable")),
            template=POD_TEMPLATE_SPEC,
        ),
        _CONDITIONS_REPLICAS + " collisionCount unavailableReplicas updatedReplicas",
    ),
    "ReplicaSet": _kind(
        _f("minReadySeconds replicas", selector=LABEL_SELECTOR, template=POD_TEMPLATE_SPEC),
        _CONDITIONS_REPLICAS + " fullyLabeledReplicas",
    ),
    "DaemonSet": _kind(
        _f(
            "minReadySeconds revisionHistoryLimit",
            selector=LABEL_SELECTOR,
            template=POD_TEMPLATE_SPEC,
            updateStrategy=_f("type", rollingUpdate=_f("maxSurge maxUnavailable")),
        ),
        "collisionCount conditions currentNumberScheduled desiredNumberScheduled numberAvailable "
        "numberMisscheduled numberReady numberUnavailable observedGeneration updatedNumberScheduled",
    ),
    "StatefulSet": _kind(
        _f(
            "minReadySeconds podManagementPolicy replicas revisionHistoryLimit serviceName",
            ordinals=_f("start"),
            persistentVolumeClaimRetentionPolicy=_f("whenDeleted whenScaled"),
            selector=LABEL_SELECTOR,
            template=POD_TEMPLATE_SPEC,
            updateStrategy=_f("type", rollingUpdate=_f("maxUnavailable partition")),
            volumeClaimTemplates=_PVC,
        ),
        _CONDITIONS_REPLICAS + " collisionCount currentReplicas currentRevision updateRevision updatedReplicas",
    ),
    "ControllerRevision": _kind(None, None, data=None, revision=None),
    "Job": _kind(
        JOB_SPEC,
        "active completedIndexes completionTime conditions failed failedIndexes ready startTime succeeded "
        "terminating uncountedTerminatedPods",
    ),
    "CronJob": _kind(
        _f(
            "concurrencyPolicy failedJobsHistoryLimit schedule startingDeadlineSeconds "
            "successfulJobsHistoryLimit suspend timeZone",
            jobTemplate=_f(metadata=OBJECT_META, spec=JOB_SPEC),
        ),
        "active lastScheduleTime lastSuccessfulTime",
    ),
    "EndpointSlice": _kind(
        None,
        None,
        addressType=None,
        endpoints=_f(
            "addresses deprecatedTopology hostname nodeName zone",
            conditions=_f("ready serving terminating"),
            hints=_f(forZones=_f("name")),
            targetRef=OBJECT_REFERENCE,
        ),
        ports=_f("appProtocol name port protocol"),
    ),
    "Lease": _kind(
        _f("acquireTime holderIdentity leaseDurationSeconds leaseTransitions preferredHolder renewTime strategy")
    ),
    "TokenReview": _kind(_f("audiences token"), "audiences authenticated error user"),
    "Binding": _kind(None, None, target=OBJECT_REFERENCE),
    "DeleteOptions": _f(
        "apiVersion dryRun gracePeriodSeconds ignoreStoreReadErrorWithClusterBreakingPotential kind "
        "orphanDependents propagationPolicy",
        preconditions=_f("resourceVersion uid"),
    ),
}
# Kinds whose shape depends on the group: (apiVersion, kind) -> fields.
BY_API_VERSION: Final[dict[tuple[str, str], Fields]] = {
    ("events.k8s.io/v1", "Event"): _kind(
        None,
        None,
        **_f(
            "action deprecatedCount deprecatedFirstTimestamp deprecatedLastTimestamp eventTime note reason "
            "reportingController reportingInstance type",
            deprecatedSource=_EVENT_SOURCE, regarding=OBJECT_REFERENCE, related=OBJECT_REFERENCE,
            series=_EVENT_SERIES,
        ),
    ),
}  # fmt: skip


def schema_for(kind: str, api_version: str | None = None) -> Fields | None:
    """The field tree for a kind (None when the kind is not known here: nothing is checked)."""
    if api_version is not None and (api_version, kind) in BY_API_VERSION:
        return BY_API_VERSION[(api_version, kind)]
    return KINDS.get(kind)


def unknown_fields(kind: str, obj: Mapping[str, Any], api_version: str | None = None) -> list[str]:
    """Dotted paths of the fields in `obj` the API type does not have, in document order.

    `api_version` picks the shape where it differs by group (Event); it defaults to the object's own
    apiVersion.
    """
    if api_version is None:
        declared = obj.get("apiVersion")
        api_version = declared if isinstance(declared, str) else None
    node = schema_for(kind, api_version)
    out: list[str] = []
    if node is not None:
        _walk(node, obj, "", out)
    return out


def _walk(node: Fields, value: Any, path: str, out: list[str]) -> None:
    if isinstance(value, Mapping):
        for key, child in value.items():
            sub = f"{path}.{key}" if path else str(key)
            if key not in node:
                out.append(sub)
                continue
            below = node[key]
            if below is not None and child is not None:
                _walk(below, child, sub, out)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _walk(node, item, f"{path}[{i}]", out)


def fields_at(kind: str, path: Iterable[str | int], api_version: str | None = None) -> frozenset[str] | None:
    """The field names known at `path` (a sequence of keys; list indexes are skipped), or None where anything
    goes (an open map, a scalar, an unknown kind or a path that leaves the tree)."""
    node = schema_for(kind, api_version)
    for step in path:
        if isinstance(step, int):
            continue
        if node is None or step not in node:
            return None
        node = node[step]
    return None if node is None else frozenset(node)


def strict_error_message(kind: str, version: str, fields: Sequence[str]) -> str:
    """The 400 message for `fieldValidation=Strict` (`version` is the bare version, e.g. "v1")."""
    listed = ", ".join(f'unknown field "{f}"' for f in fields)
    return f'{kind} in version "{version}" cannot be handled as a {kind}: strict decoding error: {listed}'


def warning_messages(fields: Sequence[str]) -> list[str]:
    """The text of each `Warning` header for `fieldValidation=Warn` (before header quoting)."""
    return [f'unknown field "{f}"' for f in fields]
