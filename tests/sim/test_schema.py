"""Unknown-field detection: real manifests pass, misspellings are found where kube-apiserver finds them."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes.client import models

from nodemeta.sim import schema
from nodemeta.sim.resources import RESOURCES
from nodemeta.sim.schema import fields_at, strict_error_message, unknown_fields, warning_messages

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"

CONTAINER: dict[str, Any] = {
    "name": "web",
    "image": "nginx:1.27",
    "imagePullPolicy": "IfNotPresent",
    "command": ["nginx"],
    "args": ["-g", "daemon off;"],
    "workingDir": "/srv",
    "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP", "hostPort": 8080, "hostIP": "0.0.0.0"}],
    "env": [
        {"name": "PLAIN", "value": "1"},
        {"name": "POD", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
        {
            "name": "CPU",
            "valueFrom": {"resourceFieldRef": {"containerName": "web", "resource": "limits.cpu", "divisor": "1m"}},
        },
        {"name": "CM", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k", "optional": True}}},
        {"name": "SEC", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "k"}}},
    ],
    "envFrom": [
        {"prefix": "CFG_", "configMapRef": {"name": "cfg"}},
        {"secretRef": {"name": "sec", "optional": False}},
    ],
    "resources": {
        "limits": {"cpu": "500m", "memory": "256Mi", "nvidia.com/gpu": "1"},
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "claims": [{"name": "gpu", "request": "one"}],
    },
    "resizePolicy": [{"resourceName": "cpu", "restartPolicy": "NotRequired"}],
    "volumeMounts": [
        {
            "name": "data",
            "mountPath": "/data",
            "subPath": "x",
            "readOnly": True,
            "recursiveReadOnly": "IfPossible",
        },
        {"name": "cfg", "mountPath": "/etc/cfg", "mountPropagation": "None", "subPathExpr": "$(POD)"},
    ],
    "volumeDevices": [{"name": "raw", "devicePath": "/dev/xvda"}],
    "livenessProbe": {
        "httpGet": {
            "path": "/healthz",
            "port": "http",
            "scheme": "HTTP",
            "host": "localhost",
            "httpHeaders": [{"name": "X-Probe", "value": "1"}],
        },
        "initialDelaySeconds": 3,
        "periodSeconds": 10,
        "timeoutSeconds": 1,
        "successThreshold": 1,
        "failureThreshold": 3,
        "terminationGracePeriodSeconds": 30,
    },
    "readinessProbe": {"tcpSocket": {"port": 80, "host": "127.0.0.1"}},
    "startupProbe": {"grpc": {"port": 9000, "service": "health"}, "failureThreshold": 30},
    "lifecycle": {
        "postStart": {"exec": {"command": ["sh", "-c", "true"]}},
        "preStop": {"sleep": {"seconds": 5}},
    },
    "securityContext": {
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "runAsNonRoot": True,
        "privileged": False,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "procMount": "Default",
        "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
        "appArmorProfile": {"type": "Localhost", "localhostProfile": "p"},
        "seLinuxOptions": {"level": "s0:c123,c456", "role": "r", "type": "t", "user": "u"},
        "windowsOptions": {"gmsaCredentialSpecName": "g", "hostProcess": False, "runAsUserName": "u"},
    },
    "terminationMessagePath": "/dev/termination-log",
    "terminationMessagePolicy": "File",
    "stdin": False,
    "stdinOnce": False,
    "tty": False,
}

POD_SPEC: dict[str, Any] = {
    "containers": [CONTAINER, {"name": "sidecar", "image": "busybox"}],
    "initContainers": [{"name": "init", "image": "busybox", "restartPolicy": "Always"}],
    "restartPolicy": "Always",
    "terminationGracePeriodSeconds": 30,
    "activeDeadlineSeconds": 600,
    "dnsPolicy": "ClusterFirst",
    "dnsConfig": {
        "nameservers": ["1.1.1.1"],
        "searches": ["svc"],
        "options": [{"name": "ndots", "value": "2"}],
    },
    "nodeSelector": {"kubernetes.io/os": "linux", "any/key": "v"},
    "serviceAccountName": "web",
    "serviceAccount": "web",
    "automountServiceAccountToken": False,
    "nodeName": "node-1",
    "hostNetwork": False,
    "hostPID": False,
    "hostIPC": False,
    "hostUsers": True,
    "shareProcessNamespace": False,
    "securityContext": {
        "fsGroup": 2000,
        "fsGroupChangePolicy": "OnRootMismatch",
        "runAsUser": 1000,
        "runAsNonRoot": True,
        "supplementalGroups": [3000],
        "supplementalGroupsPolicy": "Merge",
        "seLinuxChangePolicy": "Recursive",
        "sysctls": [{"name": "net.core.somaxconn", "value": "1024"}],
        "seccompProfile": {"type": "RuntimeDefault"},
    },
    "imagePullSecrets": [{"name": "regcred"}],
    "hostname": "web-0",
    "subdomain": "web",
    "setHostnameAsFQDN": False,
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}],
                        "matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["n"]}],
                    },
                ]
            },
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 1, "preference": {"matchExpressions": [{"key": "ssd", "operator": "Exists"}]}},
            ],
        },
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "labelSelector": {"matchLabels": {"app": "web"}},
                        "topologyKey": "kubernetes.io/hostname",
                        "namespaceSelector": {},
                        "namespaces": ["shop"],
                        "matchLabelKeys": ["pod-template-hash"],
                    },
                }
            ],
        },
        "podAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {
                    "labelSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["db"]}]},
                    "topologyKey": "zone",
                    "mismatchLabelKeys": ["x"],
                },
            ]
        },
    },
    "tolerations": [{"key": "k", "operator": "Equal", "value": "v", "effect": "NoExecute", "tolerationSeconds": 30}],
    "topologySpreadConstraints": [
        {
            "maxSkew": 1,
            "topologyKey": "zone",
            "whenUnsatisfiable": "DoNotSchedule",
            "minDomains": 2,
            "labelSelector": {"matchLabels": {"app": "web"}},
            "matchLabelKeys": ["pod-template-hash"],
            "nodeAffinityPolicy": "Honor",
            "nodeTaintsPolicy": "Ignore",
        }
    ],
    "priorityClassName": "high",
    "priority": 1000,
    "preemptionPolicy": "PreemptLowerPriority",
    "schedulerName": "default-scheduler",
    "runtimeClassName": "runc",
    "enableServiceLinks": False,
    "readinessGates": [{"conditionType": "example.com/ready"}],
    "schedulingGates": [{"name": "wait"}],
    "overhead": {"cpu": "10m"},
    "os": {"name": "linux"},
    "resourceClaims": [{"name": "gpu", "resourceClaimTemplateName": "gpu-template"}],
    "resources": {"limits": {"cpu": "1"}},
    "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["db"]}],
    "volumes": [
        {"name": "data", "persistentVolumeClaim": {"claimName": "data", "readOnly": False}},
        {
            "name": "cfg",
            "configMap": {
                "name": "cfg",
                "defaultMode": 420,
                "optional": True,
                "items": [{"key": "a", "path": "a.conf", "mode": 256}],
            },
        },
        {
            "name": "sec",
            "secret": {"secretName": "sec", "defaultMode": 256, "items": [{"key": "k", "path": "k"}]},
        },
        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
        {"name": "host", "hostPath": {"path": "/var/log", "type": "Directory"}},
        {
            "name": "info",
            "downwardAPI": {
                "defaultMode": 420,
                "items": [
                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                    {"path": "cpu", "resourceFieldRef": {"containerName": "web", "resource": "requests.cpu"}},
                ],
            },
        },
        {
            "name": "token",
            "projected": {
                "defaultMode": 420,
                "sources": [
                    {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607, "audience": "api"}},
                    {
                        "configMap": {
                            "name": "kube-root-ca.crt",
                            "items": [{"key": "ca.crt", "path": "ca.crt"}],
                        }
                    },
                    {
                        "downwardAPI": {
                            "items": [
                                {
                                    "path": "namespace",
                                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                                }
                            ]
                        }
                    },
                    {"secret": {"name": "sec", "optional": True}},
                    {"clusterTrustBundle": {"signerName": "x/y", "path": "b.pem", "labelSelector": {}}},
                ],
            },
        },
        {
            "name": "scratch",
            "ephemeral": {
                "volumeClaimTemplate": {
                    "metadata": {"labels": {"type": "scratch"}},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "storageClassName": "fast",
                        "resources": {"requests": {"storage": "1Gi"}},
                    },
                }
            },
        },
        {"name": "csi", "csi": {"driver": "d", "readOnly": True, "volumeAttributes": {"any": "thing"}}},
        {"name": "nfs", "nfs": {"server": "nfs", "path": "/", "readOnly": True}},
        {"name": "img", "image": {"reference": "busybox", "pullPolicy": "IfNotPresent"}},
    ],
}

DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {
        "name": "web",
        "namespace": "shop",
        "labels": {"app": "web", "app.kubernetes.io/part-of": "shop"},
        "annotations": {LAST_APPLIED: '{"apiVersion":"apps/v1","kind":"Deployment"}', "anything": "goes"},
        "generateName": "web-",
        "finalizers": ["example.com/x"],
        "ownerReferences": [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "name": "o",
                "uid": "u",
                "controller": False,
                "blockOwnerDeletion": True,
            },
        ],
        "managedFields": [
            {
                "manager": "kubectl",
                "operation": "Update",
                "apiVersion": "apps/v1",
                "time": "2024-01-01T00:00:00Z",
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:spec": {"f:replicas": {}}},
                "subresource": "",
            },
        ],
        "uid": "0d6c",
        "resourceVersion": "12",
        "generation": 3,
        "creationTimestamp": "2024-01-01T00:00:00Z",
        "deletionTimestamp": None,
        "deletionGracePeriodSeconds": None,
        "selfLink": "",
    },
    "spec": {
        "replicas": 3,
        "minReadySeconds": 5,
        "revisionHistoryLimit": 10,
        "progressDeadlineSeconds": 600,
        "paused": False,
        "selector": {
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a"]}],
        },
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
        "template": {"metadata": {"labels": {"app": "web"}, "annotations": {"x": "y"}}, "spec": POD_SPEC},
    },
    "status": {
        "replicas": 3,
        "readyReplicas": 3,
        "updatedReplicas": 3,
        "availableReplicas": 3,
        "unavailableReplicas": 0,
        "observedGeneration": 3,
        "collisionCount": 0,
        "conditions": [{"type": "Available", "status": "True", "anything": "below status is unchecked"}],
    },
}

SIMPLE_TEMPLATE = {
    "metadata": {"labels": {"app": "x"}},
    "spec": {"containers": [{"name": "c", "image": "i"}]},
}

OBJECTS: dict[str, dict[str, Any]] = {
    "Deployment": DEPLOYMENT,
    "Pod": {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {
            **POD_SPEC,
            "ephemeralContainers": [
                {
                    "name": "debug",
                    "image": "busybox",
                    "targetContainerName": "web",
                    "stdin": True,
                    "tty": True,
                }
            ],
        },
        "status": {
            "phase": "Running",
            "podIP": "10.0.0.5",
            "podIPs": [{"ip": "10.0.0.5"}],
            "hostIP": "10.1.0.1",
            "conditions": [],
            "containerStatuses": [{"name": "web", "ready": True}],
            "qosClass": "Burstable",
            "startTime": "2024-01-01T00:00:00Z",
        },
    },
    "Service": {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "type": "LoadBalancer",
            "selector": {"app": "web", "any.key/x": "y"},
            "ports": [
                {
                    "name": "http",
                    "port": 80,
                    "targetPort": "http",
                    "protocol": "TCP",
                    "nodePort": 30080,
                    "appProtocol": "http",
                }
            ],
            "clusterIP": "10.96.0.10",
            "clusterIPs": ["10.96.0.10"],
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "externalIPs": ["1.2.3.4"],
            "loadBalancerIP": "",
            "loadBalancerSourceRanges": ["0.0.0.0/0"],
            "loadBalancerClass": "x",
            "externalTrafficPolicy": "Local",
            "internalTrafficPolicy": "Cluster",
            "healthCheckNodePort": 31000,
            "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10800}},
            "publishNotReadyAddresses": False,
            "allocateLoadBalancerNodePorts": True,
            "trafficDistribution": "PreferClose",
            "externalName": "",
        },
        "status": {"loadBalancer": {"ingress": [{"ip": "5.6.7.8", "ipMode": "VIP"}]}, "conditions": []},
    },
    "DaemonSet": {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": "kube-system"},
        "spec": {
            "selector": {"matchLabels": {"app": "x"}},
            "template": SIMPLE_TEMPLATE,
            "minReadySeconds": 0,
            "revisionHistoryLimit": 10,
            "updateStrategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0},
            },
        },
        "status": {"desiredNumberScheduled": 2, "numberReady": 2, "numberMisscheduled": 0},
    },
    "StatefulSet": {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db"},
        "spec": {
            "serviceName": "db",
            "replicas": 3,
            "selector": {"matchLabels": {"app": "x"}},
            "template": SIMPLE_TEMPLATE,
            "podManagementPolicy": "Parallel",
            "ordinals": {"start": 1},
            "updateStrategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"partition": 0, "maxUnavailable": 1},
            },
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Delete"},
            "volumeClaimTemplates": [
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
                    "status": {"phase": "Pending"},
                }
            ],
        },
        "status": {"replicas": 3, "currentRevision": "db-1", "updateRevision": "db-1"},
    },
    "ReplicaSet": {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": "rs"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "x"}}, "template": SIMPLE_TEMPLATE},
        "status": {"replicas": 1, "fullyLabeledReplicas": 1},
    },
    "ReplicationController": {
        "apiVersion": "v1",
        "kind": "ReplicationController",
        "metadata": {"name": "rc"},
        "spec": {"replicas": 1, "selector": {"app": "x"}, "template": SIMPLE_TEMPLATE, "minReadySeconds": 0},
        "status": {"replicas": 1},
    },
    "Job": {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "pi"},
        "spec": {
            "completions": 3,
            "parallelism": 2,
            "backoffLimit": 4,
            "activeDeadlineSeconds": 100,
            "ttlSecondsAfterFinished": 60,
            "completionMode": "Indexed",
            "suspend": False,
            "manualSelector": False,
            "backoffLimitPerIndex": 1,
            "maxFailedIndexes": 2,
            "podReplacementPolicy": "Failed",
            "managedBy": "kubernetes.io/job-controller",
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {"containerName": "c", "operator": "In", "values": [42]},
                    },
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
                ]
            },
            "successPolicy": {"rules": [{"succeededIndexes": "0-2", "succeededCount": 1}]},
            "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "pi", "image": "perl"}]}},
        },
        "status": {"active": 1, "startTime": "2024-01-01T00:00:00Z", "uncountedTerminatedPods": {}},
    },
    "CronJob": {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "hello"},
        "spec": {
            "schedule": "*/1 * * * *",
            "timeZone": "Etc/UTC",
            "concurrencyPolicy": "Forbid",
            "suspend": False,
            "startingDeadlineSeconds": 100,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 1,
            "jobTemplate": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {
                    "template": {
                        "spec": {
                            "restartPolicy": "OnFailure",
                            "containers": [{"name": "hello", "image": "busybox"}],
                        }
                    }
                },
            },
        },
        "status": {
            "active": [{"kind": "Job", "name": "hello-1"}],
            "lastScheduleTime": "2024-01-01T00:00:00Z",
        },
    },
    "Namespace": {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "shop"},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    },
    "Node": {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "node-1"},
        "spec": {
            "podCIDR": "10.244.0.0/24",
            "podCIDRs": ["10.244.0.0/24"],
            "providerID": "kind://x",
            "unschedulable": True,
            "taints": [{"key": "k", "effect": "NoSchedule", "value": "v", "timeAdded": None}],
        },
        "status": {
            "nodeInfo": {"kubeletVersion": "v1.32.0"},
            "addresses": [],
            "capacity": {"cpu": "4"},
            "allocatable": {"cpu": "4"},
            "conditions": [],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 1}},
        },
    },
    "Event": {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "e"},
        "involvedObject": {
            "kind": "Pod",
            "name": "p",
            "namespace": "default",
            "uid": "u",
            "apiVersion": "v1",
            "resourceVersion": "1",
            "fieldPath": "spec.containers{web}",
        },
        "reason": "Started",
        "message": "Started container",
        "type": "Normal",
        "count": 2,
        "firstTimestamp": "2024-01-01T00:00:00Z",
        "lastTimestamp": "2024-01-01T00:00:01Z",
        "eventTime": None,
        "source": {"component": "kubelet", "host": "node-1"},
        "action": "",
        "reportingComponent": "kubelet",
        "reportingInstance": "node-1",
        "related": None,
        "series": {"count": 2, "lastObservedTime": "2024-01-01T00:00:01.000000Z"},
    },
    "ConfigMap": {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cfg"},
        "immutable": False,
        "data": {"any-key": "v", "nested.looking": '{"a": 1}'},
        "binaryData": {"b": "AAEC"},
    },
    "ServiceAccount": {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "sa"},
        "automountServiceAccountToken": True,
        "secrets": [{"name": "s", "kind": "Secret"}],
        "imagePullSecrets": [{"name": "r"}],
    },
    "ControllerRevision": {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {"name": "r"},
        "revision": 2,
        "data": {"spec": {"template": {"whatever": {"deep": [1, {"x": 2}]}}}},
    },
    "EndpointSlice": {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "web-abc"},
        "addressType": "IPv4",
        "endpoints": [
            {
                "addresses": ["10.0.0.5"],
                "conditions": {"ready": True, "serving": True, "terminating": False},
                "hostname": "web-0",
                "nodeName": "node-1",
                "zone": "a",
                "targetRef": {"kind": "Pod", "name": "web-0", "namespace": "shop", "uid": "u"},
                "hints": {"forZones": [{"name": "a"}]},
                "deprecatedTopology": {"any": "thing"},
            }
        ],
        "ports": [{"name": "http", "port": 80, "protocol": "TCP", "appProtocol": "http"}],
    },
    "Lease": {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "l"},
        "spec": {
            "holderIdentity": "me",
            "leaseDurationSeconds": 15,
            "acquireTime": "2024-01-01T00:00:00.000000Z",
            "renewTime": "2024-01-01T00:00:00.000000Z",
            "leaseTransitions": 1,
            "strategy": "OldestEmulationVersion",
            "preferredHolder": "you",
        },
    },
    "TokenReview": {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "metadata": {},
        "spec": {"token": "abc", "audiences": ["api"]},
        "status": {"authenticated": True, "user": {"username": "u", "extra": {"any": ["x"]}}},
    },
    "Binding": {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": "p", "namespace": "default"},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"},
    },
    "DeleteOptions": {
        "apiVersion": "meta.k8s.io/v1",
        "kind": "DeleteOptions",
        "gracePeriodSeconds": 0,
        "propagationPolicy": "Foreground",
        "orphanDependents": False,
        "dryRun": ["All"],
        "preconditions": {"uid": "u", "resourceVersion": "1"},
        "ignoreStoreReadErrorWithClusterBreakingPotential": False,
    },
}

EVENTS_V1 = {
    "apiVersion": "events.k8s.io/v1",
    "kind": "Event",
    "metadata": {"name": "e"},
    "eventTime": "2024-01-01T00:00:00.000000Z",
    "reportingController": "kubelet",
    "reportingInstance": "node-1",
    "action": "Started",
    "reason": "Started",
    "note": "hello",
    "type": "Normal",
    "regarding": {"kind": "Pod", "name": "p"},
    "related": {"kind": "Node", "name": "node-1"},
    "series": {"count": 2, "lastObservedTime": "2024-01-01T00:00:00.000000Z"},
    "deprecatedSource": {"component": "kubelet"},
    "deprecatedFirstTimestamp": None,
    "deprecatedLastTimestamp": None,
    "deprecatedCount": 0,
}


@pytest.mark.parametrize("kind", sorted(OBJECTS))
def test_real_objects_have_no_unknown_fields(kind: str) -> None:
    assert unknown_fields(kind, OBJECTS[kind]) == []


def test_every_served_kind_and_request_body_has_a_schema() -> None:
    assert {r.kind for r in RESOURCES} | {"Binding", "DeleteOptions"} == set(schema.KINDS)
    assert set(OBJECTS) == set(schema.KINDS)


def test_events_v1_shape_differs_from_core() -> None:
    assert unknown_fields("Event", EVENTS_V1) == []
    assert unknown_fields("Event", EVENTS_V1, api_version="events.k8s.io/v1") == []
    # The same body judged as a core/v1 Event: every events.k8s.io-only field is unknown.
    core = unknown_fields("Event", EVENTS_V1, api_version="v1")
    assert core == [
        "reportingController",
        "note",
        "regarding",
        "deprecatedSource",
        "deprecatedFirstTimestamp",
        "deprecatedLastTimestamp",
        "deprecatedCount",
    ]
    as_v1 = unknown_fields("Event", OBJECTS["Event"], api_version="events.k8s.io/v1")
    assert "involvedObject" in as_v1 and "message" in as_v1 and "source" in as_v1


def test_misspellings_at_several_depths_in_document_order() -> None:
    obj = copy.deepcopy(DEPLOYMENT)
    obj["metadata"]["lables"] = {"a": "b"}
    obj["spec"]["replica"] = 2
    template = obj["spec"]["template"]
    template["metadata"]["annotatons"] = {}
    containers = template["spec"]["containers"]
    containers[0]["imagee"] = "nginx"
    containers[0]["ports"][0]["containerport"] = 80
    containers[0]["livenessProbe"]["httpGet"]["paht"] = "/"
    containers[1]["Env"] = []
    template["spec"]["volumes"][6]["projected"]["sources"][0]["serviceAccountToken"]["expiration"] = 1
    obj["spec"]["strategy"]["rollingUpdate"]["maxsurge"] = 1
    # Keys added to a map land at its end: document order, not the order they were added in.
    assert unknown_fields("Deployment", obj) == [
        "metadata.lables",
        "spec.strategy.rollingUpdate.maxsurge",
        "spec.template.metadata.annotatons",
        "spec.template.spec.containers[0].ports[0].containerport",
        "spec.template.spec.containers[0].livenessProbe.httpGet.paht",
        "spec.template.spec.containers[0].imagee",
        "spec.template.spec.containers[1].Env",
        "spec.template.spec.volumes[6].projected.sources[0].serviceAccountToken.expiration",
        "spec.replica",
    ]


def test_order_follows_the_document_not_the_schema() -> None:
    obj = {
        "zeta": 1,
        "spec": {"template": {"spec": {"containers": [{"b": 1, "name": "c", "a": 2}]}}},
        "alpha": 2,
    }
    assert unknown_fields("Deployment", obj) == [
        "zeta",
        "spec.template.spec.containers[0].b",
        "spec.template.spec.containers[0].a",
        "alpha",
    ]


def test_unknown_subtree_is_reported_once_and_not_descended() -> None:
    obj = {"spec": {"bogus": {"deeper": {"still": 1}}, "replicas": 1}}
    assert unknown_fields("Deployment", obj) == ["spec.bogus"]


def test_field_names_are_case_sensitive() -> None:
    assert unknown_fields("Pod", {"Metadata": {}, "spec": {"Containers": []}}) == [
        "Metadata",
        "spec.Containers",
    ]


@pytest.mark.parametrize("kind", sorted(k for k, v in schema.KINDS.items() if "status" in v))
def test_type_meta_and_status_never_flagged_where_the_kind_has_them(kind: str) -> None:
    obj = {"apiVersion": "x/v9", "kind": kind, "status": {}, "metadata": {}}
    assert unknown_fields(kind, obj) == []


@pytest.mark.parametrize("kind", ["ConfigMap", "ServiceAccount", "Lease", "EndpointSlice", "ControllerRevision"])
def test_status_is_unknown_where_the_kind_has_none(kind: str) -> None:
    assert unknown_fields(kind, {"apiVersion": "v1", "kind": kind, "status": {}}) == ["status"]


def test_open_maps_are_never_flagged() -> None:
    anything = {"Weird Key!": {"nested": [1, {"deep": True}]}, "x": None}
    pod = {
        "metadata": {"labels": anything, "annotations": anything, "managedFields": [{"fieldsV1": anything}]},
        "spec": {
            "nodeSelector": anything,
            "overhead": anything,
            "containers": [{"resources": {"limits": anything, "requests": anything}}],
            "volumes": [{"csi": {"volumeAttributes": anything}, "flexVolume": {"options": anything}}],
        },
        "status": {"conditions": [anything], "containerStatuses": anything, "podIPs": anything},
    }
    assert unknown_fields("Pod", pod) == []
    assert unknown_fields("ConfigMap", {"data": anything, "binaryData": anything}) == []
    assert unknown_fields("ControllerRevision", {"data": anything}) == []
    assert unknown_fields("Service", {"spec": {"selector": anything}}) == []
    assert unknown_fields("ReplicationController", {"spec": {"selector": anything}}) == []
    assert unknown_fields("Deployment", {"spec": {"selector": {"matchLabels": anything}}}) == []
    assert unknown_fields("EndpointSlice", {"endpoints": [{"deprecatedTopology": anything}]}) == []
    assert unknown_fields("TokenReview", {"status": {"user": anything}}) == []


def test_unknown_kind_checks_nothing() -> None:
    assert unknown_fields("Widget", {"anything": {"goes": 1}}) == []


def test_values_of_the_wrong_type_do_not_raise() -> None:
    weird: dict[str, Any] = {
        "metadata": "not-a-map",
        "spec": {"containers": {"name": "c", "imagee": "x"}, "volumes": [1, "two", None, [{"nmae": 1}]]},
        "status": [1, 2],
    }
    # A map where a list belongs is checked as the element it should hold; scalars are not looked into.
    assert unknown_fields("Pod", weird) == ["spec.containers.imagee", "spec.volumes[3][0].nmae"]
    assert unknown_fields("Pod", {"spec": None, "metadata": None}) == []


def test_declared_api_version_is_used_when_none_is_passed() -> None:
    body = {"apiVersion": "events.k8s.io/v1", "note": "n"}
    assert unknown_fields("Event", body) == []
    assert unknown_fields("Event", {"apiVersion": 7, "note": "n"}) == ["note"]


def test_error_and_warning_texts() -> None:
    fields = ["spec.replica", "metadata.lables"]
    assert strict_error_message("Deployment", "v1", fields) == (
        'Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: '
        'unknown field "spec.replica", unknown field "metadata.lables"'
    )
    assert warning_messages(fields) == ['unknown field "spec.replica"', 'unknown field "metadata.lables"']


def test_fields_at() -> None:
    container = fields_at("Deployment", ["spec", "template", "spec", "containers", 0])
    assert container is not None and {"name", "image", "ports", "env"} <= container
    assert fields_at("Deployment", ["metadata", "labels"]) is None
    assert fields_at("Deployment", ["spec", "nope"]) is None
    assert fields_at("Widget", []) is None
    assert fields_at("Event", [], api_version="events.k8s.io/v1") == frozenset(
        schema.BY_API_VERSION[("events.k8s.io/v1", "Event")]
    )


# --- the field lists against the official client's models (generated from the API's OpenAPI) -------------
ROOT_MODELS = {
    "Namespace": "V1Namespace",
    "Node": "V1Node",
    "Pod": "V1Pod",
    "Service": "V1Service",
    "ReplicationController": "V1ReplicationController",
    "Event": "CoreV1Event",
    "ConfigMap": "V1ConfigMap",
    "ServiceAccount": "V1ServiceAccount",
    "Deployment": "V1Deployment",
    "ReplicaSet": "V1ReplicaSet",
    "DaemonSet": "V1DaemonSet",
    "StatefulSet": "V1StatefulSet",
    "ControllerRevision": "V1ControllerRevision",
    "Job": "V1Job",
    "CronJob": "V1CronJob",
    "EndpointSlice": "V1EndpointSlice",
    "Lease": "V1Lease",
    "TokenReview": "V1TokenReview",
    "Binding": "V1Binding",
    "DeleteOptions": "V1DeleteOptions",
}
_MODEL_NAME = re.compile(r"\b(?:V\d\w*|CoreV1\w+|EventsV1\w+|DiscoveryV1\w+)\b")


def _model_fields(name: str) -> dict[str, str]:
    cls = getattr(models, name)
    return {cls.attribute_map[attr]: typ for attr, typ in cls.openapi_types.items()}


def _pairs(node: schema.Fields, model: str, path: str) -> Iterator[tuple[str, schema.Fields, str]]:
    yield path, node, model
    known = _model_fields(model)
    for key, child in node.items():
        if child is None or key not in known:
            continue
        found = _MODEL_NAME.findall(known[key])
        assert found, f"{path}.{key} is a struct here but {known[key]} in the client"
        yield from _pairs(child, found[0], f"{path}.{key}")


def test_every_listed_field_exists_in_the_official_types() -> None:
    """No typo in the data: each name is a JSON field of the matching type in the official client's models,
    and every field given structure here is an object there. (The client may be newer than 1.32 and know
    more fields; the exact 1.32 lists were checked against the 1.32 API when this was written.)"""
    checked = 0
    roots = [(schema.KINDS[k], m, k) for k, m in ROOT_MODELS.items()]
    roots.append((schema.BY_API_VERSION[("events.k8s.io/v1", "Event")], "EventsV1Event", "events.k8s.io Event"))
    for root, model, label in roots:
        for path, node, name in _pairs(root, model, label):
            extra = set(node) - set(_model_fields(name))
            assert not extra, f"{path} ({name}) lists fields the API does not have: {sorted(extra)}"
            checked += 1
    assert checked > 100


# --- property: an unknown key anywhere a struct is known is always reported ---------------------------------
def _struct_locations(kind: str, value: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    if isinstance(value, Mapping):
        if fields_at(kind, path) is not None:
            yield path
            for key, child in value.items():
                yield from _struct_locations(kind, child, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _struct_locations(kind, item, (*path, i))


def _render(path: tuple[str | int, ...]) -> str:
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else step)
    return out


LOCATIONS = [(kind, loc) for kind in sorted(OBJECTS) for loc in _struct_locations(kind, OBJECTS[kind])]


def test_the_samples_offer_many_struct_locations() -> None:
    assert len(LOCATIONS) > 300


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    where=st.sampled_from(LOCATIONS),
    key=st.text(alphabet=st.characters(codec="ascii", categories=["L", "N", "P"]), min_size=1, max_size=12),
    first=st.booleans(),
)
def test_an_added_unknown_key_is_always_reported(
    where: tuple[str, tuple[str | int, ...]], key: str, first: bool
) -> None:
    kind, path = where
    known = fields_at(kind, path)
    assert known is not None
    if key in known:
        key += "_x"
    obj = copy.deepcopy(OBJECTS[kind])
    target: Any = obj
    for step in path:
        target = target[step]
    if first:  # at the front of the map rather than at the end
        rest = dict(target)
        target.clear()
        target[key] = {"any": "value"}
        target.update(rest)
    else:
        target[key] = 1
    expected = _render((*path, key))
    assert unknown_fields(kind, obj) == [expected]
