"""Kubernetes that rolls: the manifests as `kubectl kustomize` would render them pass
`kubernetes-validate`, KEDA alone sets the replica count, its trigger is bound to the input
topic with credentials of its own, and a rolling update at KEDA's maximum (one more pod than
partitions) does not wait forever for a pod that the range assignor leaves without partitions.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata
from prometheus_client import CollectorRegistry

import charger.app as app_module
from charger.app import ChargingService
from charger.metrics import Metrics
from charger.settings import Settings
from charger_topics import names

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
# The Kubernetes release whose API schemas the manifests must satisfy.
KUBERNETES_VERSION = "1.30.0"
# Custom resources kubernetes-validate has no schema for: its schemas are the built-in API's.
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}


def rendered() -> list[dict[str, Any]]:
    """Every document of the resources kustomization.yaml lists, in its order."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    labels: dict[str, str] = {}
    for entry in kustomization.get("labels", []):
        labels.update(entry["pairs"])
    docs = []
    for name in kustomization["resources"]:
        for doc in yaml.safe_load_all((K8S / name).read_text()):
            if doc:
                doc["metadata"].setdefault("labels", {}).update(labels)
                docs.append(doc)
    return docs


def by_kind() -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in rendered()}


def test_kubernetes_validate_accepts_every_built_in_kind() -> None:
    if os.environ.get("CI"):
        import kubernetes_validate
    else:
        kubernetes_validate = pytest.importorskip("kubernetes_validate")
    checked = set()
    for doc in rendered():
        if doc["kind"] in KEDA_KINDS:
            continue  # checked field by field below
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        checked.add(doc["kind"])
    assert checked == {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget"}


def test_kubernetes_validate_refuses_a_broken_manifest() -> None:
    """The check above can fail: a misspelt field of a Deployment is refused."""
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    broken = by_kind()["Deployment"]
    broken["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_keda_alone_sets_the_replica_count() -> None:
    kinds = by_kind()
    assert "replicas" not in kinds["Deployment"]["spec"]
    target = kinds["ScaledObject"]["spec"]["scaleTargetRef"]
    assert target["name"] == kinds["Deployment"]["metadata"]["name"]


def test_the_trigger_counts_the_input_topic_with_credentials_of_its_own() -> None:
    kinds = by_kind()
    (trigger,) = kinds["ScaledObject"]["spec"]["triggers"]
    assert trigger["metadata"]["topic"] == names.TELEPHONY_EVENTS
    auth = kinds["TriggerAuthentication"]
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    assert "kind" not in trigger["authenticationRef"]  # a TriggerAuthentication, namespaced
    refs = {ref["parameter"]: ref for ref in auth["spec"]["secretTargetRef"]}
    # The Kafka scaler's parameters for SASL (PLAIN or SCRAM) and TLS with a private CA.
    assert set(refs) == {"sasl", "username", "password", "tls", "ca"}
    assert all(ref["name"] and ref["key"] for ref in refs.values())
    # No credential is written into the trigger itself.
    assert not {"sasl", "username", "password", "tls", "ca"} & set(trigger["metadata"])


# ---- a rolling update at maxReplicaCount ----
def range_assignment(members: list[str], partitions: int) -> dict[str, int]:
    """Partitions per member of the charging group, by aiokafka's own range assignor (the
    charging consumer's strategy) over the topics it subscribes to."""
    cluster: Any = SimpleNamespace(partitions_for_topic=lambda topic: set(range(partitions)))
    subscription = list(names.CO_PARTITIONED)
    metadata = {m: ConsumerProtocolMemberMetadata(0, subscription, b"") for m in members}
    assigned = RangePartitionAssignor.assign(cluster, metadata)
    return {m: len(assigned[m].partitions()) for m in members}


def pod(assigned: int) -> ChargingService:
    """A started worker holding `assigned` partitions whose Redis and broker answer."""

    async def answers() -> None:
        return None

    service = ChargingService(Settings(), Metrics(CollectorRegistry()))
    consumer = SimpleNamespace(assignment=lambda: set(range(assigned)))
    producer = SimpleNamespace(client=SimpleNamespace(fetch_all_metadata=answers))
    worker = SimpleNamespace(consumer=consumer)
    fake: Any = SimpleNamespace(worker=worker, producer=producer, redis=None)
    service.runtime = fake
    service._charging = True
    return service


@pytest.fixture
def redis_answers(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    async def ping(_client: Any) -> None:
        return None

    monkeypatch.setattr(app_module, "ping", ping)
    yield


def rollout_steps(replicas: int) -> Iterator[list[str]]:
    """The group's members at each step of a rollout with maxSurge 1, maxUnavailable 0: a
    new pod joins, and only once it is ready does an old one leave."""
    old = [f"charger-old-{i}" for i in range(replicas)]
    new: list[str] = []
    for i in range(replicas):
        new.append(f"charger-new-{i}")
        yield old + new
        old.pop(0)


async def test_every_pod_of_a_rollout_at_max_replicas_becomes_ready(redis_answers: None) -> None:
    kinds = by_kind()
    partitions = int(kinds["ConfigMap"]["data"]["CHARGER_PARTITIONS"])
    replicas = kinds["ScaledObject"]["spec"]["maxReplicaCount"]
    rolling = kinds["Deployment"]["spec"]["strategy"]["rollingUpdate"]
    assert (rolling["maxSurge"], rolling["maxUnavailable"]) == (1, 0)
    assert replicas == partitions == 8

    steps = list(rollout_steps(replicas))
    assert len(steps) == replicas and all(len(m) == replicas + 1 for m in steps)
    idle_seen = 0
    for members in steps:
        assignment = range_assignment(members, partitions)
        assert sum(assignment.values()) == partitions * len(names.CO_PARTITIONED)
        idle = [m for m, n in assignment.items() if n == 0]
        assert len(idle) == 1, assignment  # 9 members on 8 partitions: one gets nothing
        idle_seen += 1
        for member, held in assignment.items():
            service = pod(held)
            ok, body = await service.ready()
            assert ok, (member, body)
            assert body["checks"]["assigned_partitions"] == held
            assert service.owns()[0] is (held > 0)
    assert idle_seen == replicas


async def test_a_pod_whose_redis_does_not_answer_is_not_ready(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Readiness still means something: partitions do not make a pod ready without Redis."""

    async def refuses(_client: Any) -> None:
        raise ConnectionError("refused")

    monkeypatch.setattr(app_module, "ping", refuses)
    ok, body = await pod(3).ready()
    assert not ok and body["checks"]["redis"].startswith("error")
    stopped = ChargingService(Settings(), Metrics(CollectorRegistry()))
    assert (await stopped.ready())[0] is False
    assert stopped.owns() == (False, {"owns": False, "assigned_partitions": 0})
