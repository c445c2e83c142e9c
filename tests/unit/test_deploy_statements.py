"""deploy/k8s/statements (`charger ledger-sink` and `charger api`) and the compose `api`
service refer only to what exists: every CHARGER_* variable is a Settings field with a
valid value, every secret comes from a Secret, probes and scrapes ask routes the services
really serve (the API built in-process, the sink's web server started in-process), ports
agree with args and settings, and `kubernetes-validate` accepts every rendered document.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from charger.api.app import ApiServices, create_api
from charger.api.auth import Tokens
from charger.metrics import SinkMetrics
from charger.settings import Settings
from charger.sink.command import status_pages
from charger.sink.loop import LedgerSink
from charger.sink.web import WebServer
from charger_topics import names
from tests.kit.acl import API_USER
from tests.kit.acl import users as acl_users
from tests.kit.api import MemoryAccounts, sample_plans
from tests.kit.http import get_async

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
STATEMENTS = K8S / "statements"
KUBERNETES_VERSION = "1.30.0"  # as tests/unit/test_k8s_rollout.py
COMPONENTS = {"api", "ledger-sink"}
# Values a Secret gives at run time, for checking the ConfigMaps' values with Settings.
FROM_SECRETS = {
    "redis_url": "redis://redis:6379/0",
    "redis_password": "from-the-secret",
    "database_url": "postgresql://charger@postgres/charger",
    "api_tokens": "0123456789abcdef0123",
}
SECRET_LIKE = re.compile(r"PASSWORD|TOKENS|_URL$")


def rendered() -> list[dict[str, Any]]:
    """Every document of deploy/k8s/statements as `kubectl kustomize` renders it."""
    kustomization = yaml.safe_load((STATEMENTS / "kustomization.yaml").read_text())
    labels: dict[str, str] = {}
    for entry in kustomization.get("labels", []):
        labels.update(entry["pairs"])
    docs = []
    for name in kustomization["resources"]:
        for doc in yaml.safe_load_all((STATEMENTS / name).read_text()):
            if doc:
                doc["metadata"].setdefault("labels", {}).update(labels)
                docs.append(doc)
    return docs


@cache
def by_component() -> dict[str, dict[str, dict[str, Any]]]:
    """component label -> kind -> the one document of that kind."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for doc in rendered():
        component = doc["metadata"]["labels"]["app.kubernetes.io/component"]
        kinds = out.setdefault(component, {})
        assert doc["kind"] not in kinds, (component, doc["kind"])
        kinds[doc["kind"]] = doc
    return out


def container(component: str) -> dict[str, Any]:
    (c,) = by_component()[component]["Deployment"]["spec"]["template"]["spec"]["containers"]
    return c


def setting_vars() -> set[str]:
    return {f"CHARGER_{name.upper()}" for name in Settings.model_fields}


def as_settings(env: dict[str, str]) -> Settings:
    """Settings from `env` (CHARGER_* names) with the Secrets' values where none is given."""
    given = {k.removeprefix("CHARGER_").lower(): v for k, v in env.items()}
    return Settings(**{**FROM_SECRETS, **given})


def api_routes() -> frozenset[str]:
    services = ApiServices(
        accounts=MemoryAccounts(), plans=sample_plans().current, tokens=Tokens(["x" * 16])
    )
    app = create_api(services)
    return frozenset(getattr(route, "path", "") for route in app.routes)


@pytest.fixture(scope="module")
def sink_routes() -> Iterator[frozenset[str]]:
    """The paths the sink's web server answers (not 404), asked of a started one."""
    import asyncio

    async def ask() -> frozenset[str]:
        sink = LedgerSink(Settings(), SinkMetrics())
        web = WebServer(CollectorRegistry(), status_pages(sink), "127.0.0.1", 0)
        port = await web.start()
        try:
            served = set()
            for path in ("/metrics", "/health", "/ready", "/owns", "/nothing"):
                status, _ = await get_async(f"http://127.0.0.1:{port}{path}", 5)
                if status != 404:
                    served.add(path)
            return frozenset(served)
        finally:
            await web.stop()

    yield asyncio.run(ask())


def test_the_kustomization_lists_every_manifest_and_stays_out_of_the_workers() -> None:
    kustomization = yaml.safe_load((STATEMENTS / "kustomization.yaml").read_text())
    listed = {p.name for p in STATEMENTS.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == set(kustomization["resources"])
    workers = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert not [r for r in workers["resources"] if "statements" in r]
    comment = (K8S / "kustomization.yaml").read_text()
    assert "deploy/k8s/statements" in comment
    assert set(by_component()) == COMPONENTS
    assert set(by_component()["api"]) == {
        "ConfigMap",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
    }
    assert {"ConfigMap", "Deployment", "PodDisruptionBudget"} <= set(by_component()["ledger-sink"])


def test_kubernetes_validate_accepts_every_document() -> None:
    if os.environ.get("CI"):
        import kubernetes_validate
    else:
        kubernetes_validate = pytest.importorskip("kubernetes_validate")
    docs = rendered()
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    broken = by_component()["api"]["Deployment"]
    broken = yaml.safe_load(yaml.safe_dump(broken))
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("component", sorted(COMPONENTS))
def test_settings_are_fields_with_valid_values_and_secrets_come_from_secrets(
    component: str,
) -> None:
    kinds = by_component()[component]
    c = container(component)
    data = kinds["ConfigMap"]["data"]
    env = {e["name"]: e for e in c["env"]}
    assert [r["configMapRef"]["name"] for r in c["envFrom"]] == [
        kinds["ConfigMap"]["metadata"]["name"]
    ]
    for name in [*data, *env]:
        assert name in setting_vars(), f"{component}: {name} is not a Settings field"
    assert all(isinstance(v, str) for v in data.values())
    assert not [k for k in data if SECRET_LIKE.search(k)], "secrets belong in Secrets"
    for name, entry in env.items():
        if SECRET_LIKE.search(name):
            assert "secretKeyRef" in entry["valueFrom"], f"{component}: {name}"
    assert "CHARGER_DATABASE_URL" in env
    as_settings(data)  # every value valid


def test_the_api_reads_the_workers_redis_as_its_read_only_user() -> None:
    data = by_component()["api"]["ConfigMap"]["data"]
    env = {e["name"]: e["valueFrom"] for e in container("api")["env"]}
    for name in ("CHARGER_REDIS_URL", "CHARGER_REDIS_PASSWORD", "CHARGER_API_TOKENS"):
        assert "secretKeyRef" in env[name], name
    user = acl_users()[data["CHARGER_REDIS_USERNAME"]]
    assert user.name == API_USER
    workers = yaml.safe_load((K8S / "configmap.yaml").read_text())["data"]
    assert user.key_patterns == [f"%R~{workers['CHARGER_REDIS_PREFIX']}:*"]
    # Accounts are where the workers put them: the same prefix and slot count.
    for name in ("CHARGER_REDIS_PREFIX", "CHARGER_PARTITIONS", "CHARGER_KAFKA_BOOTSTRAP"):
        assert data[name] == workers[name], name
    # The Redis URL is the workers' Secret; the password the API user's own.
    assert env["CHARGER_REDIS_URL"]["secretKeyRef"]["name"] == "charger-redis"
    assert env["CHARGER_REDIS_PASSWORD"]["secretKeyRef"]["name"] != "charger-redis"


def test_api_ports_probes_annotations_service_and_budget() -> None:
    kinds = by_component()["api"]
    data = kinds["ConfigMap"]["data"]
    c = container("api")
    args = c["args"]
    assert args[0] == "api"
    (port,) = c["ports"]
    assert port["containerPort"] == int(args[args.index("--port") + 1])
    assert port["containerPort"] == as_settings(data).api_port
    assert as_settings(data).api_host == "0.0.0.0"
    check_probes_and_annotations(kinds, c, api_routes())
    svc = kinds["Service"]["spec"]
    (sp,) = svc["ports"]
    assert sp["targetPort"] in (port["name"], port["containerPort"])
    assert svc["selector"].items() <= template_labels(kinds).items()
    assert kinds["Deployment"]["spec"]["replicas"] >= 2
    pdb = kinds["PodDisruptionBudget"]["spec"]
    assert pdb["selector"]["matchLabels"].items() <= template_labels(kinds).items()
    assert pdb.get("minAvailable", 0) >= 1 or pdb.get("maxUnavailable") == 1
    # /ready gives up on a backend before the probe gives up on /ready.
    ready_s = ApiServices.__dataclass_fields__["ready_timeout_s"].default
    assert isinstance(ready_s, float)
    assert ready_s < c["readinessProbe"]["timeoutSeconds"]


def test_sink_ports_probes_annotations_and_its_group(sink_routes: frozenset[str]) -> None:
    kinds = by_component()["ledger-sink"]
    data = kinds["ConfigMap"]["data"]
    c = container("ledger-sink")
    args = c["args"]
    assert args[0] == "ledger-sink"
    (port,) = c["ports"]
    assert port["containerPort"] == int(args[args.index("--web-port") + 1])
    settings = as_settings(data)
    assert port["containerPort"] == settings.sink_web_port
    assert sink_routes == {"/metrics", "/health", "/ready"}
    check_probes_and_annotations(kinds, c, sink_routes)
    # Its own consumer group, not the workers': it reads billing.ledger beside them.
    workers = yaml.safe_load((K8S / "configmap.yaml").read_text())["data"]
    assert settings.sink_group_id != workers["CHARGER_GROUP_ID"]
    # The group spreads the topic's partitions: more pods than partitions would idle.
    replicas = kinds["Deployment"]["spec"]["replicas"]
    assert 1 <= replicas <= names.TOPICS[names.LEDGER].partitions
    text = (STATEMENTS / "ledger-sink.yaml").read_text()
    assert "consumer group" in text and "partitions" in text


def template_labels(kinds: dict[str, dict[str, Any]]) -> dict[str, str]:
    labels: dict[str, str] = kinds["Deployment"]["spec"]["template"]["metadata"]["labels"]
    return labels


def check_probes_and_annotations(
    kinds: dict[str, dict[str, Any]], c: dict[str, Any], routes: frozenset[str]
) -> None:
    deployment = kinds["Deployment"]
    (port,) = c["ports"]
    assert c["livenessProbe"]["httpGet"]["path"] == "/health" in routes
    assert c["startupProbe"]["httpGet"]["path"] == "/health"
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready" in routes
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert c[probe]["httpGet"]["port"] in (port["name"], port["containerPort"])
    ann = deployment["spec"]["template"]["metadata"]["annotations"]
    assert ann["prometheus.io/scrape"] == "true"
    assert int(ann["prometheus.io/port"]) == port["containerPort"]
    assert ann["prometheus.io/path"] == "/metrics" in routes
    assert deployment["spec"]["selector"]["matchLabels"].items() <= template_labels(kinds).items()
    # The workers' securityContext style (deploy/k8s/deployment.yaml).
    workers = yaml.safe_load((K8S / "deployment.yaml").read_text())["spec"]["template"]["spec"]
    spec = deployment["spec"]["template"]["spec"]
    assert spec["securityContext"] == workers["securityContext"]
    assert c["securityContext"] == workers["containers"][0]["securityContext"]
    assert 10 <= spec["terminationGracePeriodSeconds"] <= 120
    assert c["image"] == workers["containers"][0]["image"]


# ---- docker compose ----
def compose_env(env: dict[str, str]) -> dict[str, str]:
    """`${NAME:-default}` as compose reads it with NAME unset."""
    return {k: re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(v)) for k, v in env.items()}


def test_compose_api_service() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    api = services["api"]
    assert api["command"][0] == "api"
    raw = api["environment"]
    assert "${CHARGER_API_TOKENS" in raw["CHARGER_API_TOKENS"], "tokens from the environment"
    env = compose_env(raw)
    for name in env:
        assert name in setting_vars(), name
    settings = Settings(**{k.removeprefix("CHARGER_").lower(): v for k, v in env.items()})
    port = int(api["command"][api["command"].index("--port") + 1])
    assert port == settings.api_port
    assert [p.split(":")[-1] for p in api["ports"]] == [str(port)]
    assert f"127.0.0.1:{port}/health" in " ".join(api["healthcheck"]["test"])
    assert "/health" in api_routes()
    user = acl_users()[env["CHARGER_REDIS_USERNAME"]]
    assert user.name == API_USER and user.accepts(env["CHARGER_REDIS_PASSWORD"])
    depends = api["depends_on"]
    for dependency in ("redis", "postgres", "ledger-sink"):
        assert depends[dependency]["condition"] == "service_healthy", dependency
    assert (
        env["CHARGER_DATABASE_URL"]
        == services["ledger-sink"]["environment"]["CHARGER_DATABASE_URL"]
    )
    prom = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    (job,) = [j for j in prom["scrape_configs"] if j["job_name"] == "charger-api"]
    assert job["metrics_path"] == "/metrics" in api_routes()
    assert job["static_configs"] == [{"targets": [f"api:{port}"]}]
