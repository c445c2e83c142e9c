"""The deploy files parse and refer only to what exists in the project.

docker-compose.yml, the Kubernetes manifests, the Prometheus configuration and the
Grafana provisioning are checked against the code: every CHARGER_* variable is a field of
`charger.settings.Settings`, every image is either built from the repository's Dockerfile
or a pinned official image, every port is the worker's web port, probes and scrapes use
routes the app serves, and every file a mount or a rule glob names is in the repository.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from charger.app import create_app
from charger.cli import TOOLS
from charger.settings import Settings
from charger_topics import names
from tests.kit.acl import ACL_FILE, WORKER_USER
from tests.kit.acl import users as acl_users

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"

# Third-party images of the compose stack, pinned (never :latest).
OFFICIAL_IMAGES = {
    "kafka": "apache/kafka",
    "redis": "redis",
    "prometheus": "prom/prometheus",
    "grafana": "grafana/grafana",
    "postgres": "postgres",
}
PROJECT_IMAGE = "charger"
DATASOURCE_UID = "charger-prometheus"


# ---- what the project has ----
@cache
def setting_vars() -> frozenset[str]:
    return frozenset(f"CHARGER_{name.upper()}" for name in Settings.model_fields)


@cache
def web_port() -> int:
    return Settings.model_fields["web_port"].default  # type: ignore[no-any-return]


@cache
def routes() -> frozenset[str]:
    return frozenset(create_app(Settings()).web.views)


@cache
def project_version() -> str:
    doc = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return str(doc["project"]["version"])


def dockerfile_exposed() -> set[int]:
    text = (ROOT / "Dockerfile").read_text()
    return {int(p) for line in re.findall(r"^EXPOSE\s+(.+)$", text, re.M) for p in line.split()}


def check_charger_vars(env: dict[str, Any] | list[str], where: str) -> None:
    keys = env.keys() if isinstance(env, dict) else [e.split("=", 1)[0] for e in env]
    for key in keys:
        if key.startswith("CHARGER_"):
            assert key in setting_vars(), f"{where}: {key} is not a Settings field"


def web_port_arg(args: list[str]) -> int:
    assert "--web-port" in args, args
    return int(args[args.index("--web-port") + 1])


def test_dockerfile_image_holds_the_product_wheel_alone() -> None:
    """A build stage makes the wheel; the final stage installs it without extras (so no
    embedded broker or Valkey) and keeps the runtime settings."""
    text = (ROOT / "Dockerfile").read_text()
    stages = re.split(r"^FROM\s+", text, flags=re.M)[1:]
    assert len(stages) >= 2, "a build stage and a runtime stage"
    assert re.search(r"pip wheel\b.*--no-deps", stages[0])
    final = stages[-1]
    assert "COPY --from=build" in final and "COPY src" not in final
    installs = re.findall(r"pip install\s+(\S+)", final)
    assert installs == ["/wheels/charger-*.whl"], installs  # no `[tools]`, no source tree
    for line in ("USER charger", "STOPSIGNAL SIGTERM", 'ENTRYPOINT ["charger"]'):
        assert re.search(rf"^{re.escape(line)}$", final, re.M), line
    assert "HEALTHCHECK" in final


# ---- docker compose ----
@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return doc


def test_compose_images_are_pinned_official_ones_or_built_here(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        image = svc["image"]
        repo, _, tag = image.rpartition(":")
        if "build" in svc:
            assert repo == PROJECT_IMAGE, name
            context = ROOT / svc["build"]["context"]
            assert (context / svc["build"].get("dockerfile", "Dockerfile")).is_file(), name
        else:
            assert repo == OFFICIAL_IMAGES[name], f"{name}: unexpected image {image}"
            assert tag and tag != "latest", f"{name}: pin {image}"


def test_compose_env_vars_are_settings_fields(compose: dict[str, Any]) -> None:
    seen = set()
    for name, svc in compose["services"].items():
        env = svc.get("environment", {})
        check_charger_vars(env, f"compose service {name}")
        seen.update(k for k in env if k.startswith("CHARGER_"))
    assert {"CHARGER_KAFKA_BOOTSTRAP", "CHARGER_REDIS_URL"} <= seen


def test_compose_workers_serve_on_the_web_port_and_prometheus_scrapes_it(
    compose: dict[str, Any],
) -> None:
    worker = compose["services"]["worker"]
    port = web_port_arg(worker["command"])
    assert port == int(worker["environment"]["CHARGER_WEB_PORT"]) == web_port()
    assert [int(p) for p in worker["expose"]] == [port]
    assert port in dockerfile_exposed()
    assert worker["deploy"]["replicas"] >= 2
    probe = " ".join(worker["healthcheck"]["test"])
    assert f"127.0.0.1:{port}/health" in probe and "/health" in routes()
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"127.0.0.1:{port}/health" in dockerfile  # the image's own HEALTHCHECK
    assert re.search(rf'^CMD \["worker", "--web-port", "{port}"\]$', dockerfile, re.M)

    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (job,) = [j for j in prom["scrape_configs"] if j["job_name"] == "charger"]
    assert job["metrics_path"] in routes()
    (sd,) = job["dns_sd_configs"]
    assert sd["names"] == ["worker"] and sd["port"] == port


def test_compose_points_the_workers_at_its_own_kafka_and_redis(compose: dict[str, Any]) -> None:
    services = compose["services"]
    env = services["worker"]["environment"]
    host, port = env["CHARGER_KAFKA_BOOTSTRAP"].split(":")
    assert (
        host in services
        and f"PLAINTEXT://{host}:{port}"
        in (services[host]["environment"]["KAFKA_ADVERTISED_LISTENERS"])
    )
    redis_host = re.match(r"redis://([^:/]+):(\d+)/", env["CHARGER_REDIS_URL"])
    assert redis_host and redis_host.group(1) in services
    assert redis_host.group(2) in " ".join(services["redis"]["ports"])
    assert "--appendonly" in services["redis"]["command"]
    assert int(services["kafka"]["environment"]["KAFKA_NUM_PARTITIONS"]) == int(
        env.get("CHARGER_PARTITIONS", Settings.model_fields["partitions"].default)
    )
    # The topic-init job runs a command the CLI has.
    init = services["topics-init"]["command"]
    assert init[0] in TOOLS  # a product command: the image has no tooling
    assert services["worker"]["command"][0] == "worker"


def test_compose_waits_for_healthy_dependencies(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, svc in services.items():
        for dep, cond in svc.get("depends_on", {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], f"{dep} has no healthcheck"
    worker = services["worker"]["depends_on"]
    assert worker["kafka"]["condition"] == worker["redis"]["condition"] == "service_healthy"
    assert worker["topics-init"]["condition"] == "service_completed_successfully"


def test_compose_mounts_exist_and_match_the_provisioning(compose: dict[str, Any]) -> None:
    mounts: dict[str, str] = {}
    for svc in compose["services"].values():
        for vol in svc.get("volumes", []):
            src, dst = vol.split(":")[:2]
            if src.startswith("."):
                assert (ROOT / src).exists(), f"{src} is not in the repository"
                mounts[dst] = src
            else:
                assert src in compose["volumes"], f"undeclared volume {src}"
    assert mounts["/etc/prometheus"] == "./deploy/prometheus"
    provider = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "charger.yml").read_text()
    )
    (prov,) = provider["providers"]
    dashboards = ROOT / mounts[prov["options"]["path"]]
    assert list(dashboards.glob("*.json")), "no dashboard where the provider looks"


# ---- Prometheus and Grafana files ----
def test_prometheus_rule_globs_find_the_alert_rules_and_nothing_else() -> None:
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    here = DEPLOY / "prometheus"
    matched = {
        p.relative_to(here).as_posix()
        for glob in prom["rule_files"]
        for p in here.rglob("*")
        if fnmatch.fnmatch(p.relative_to(here).as_posix(), glob)
    }
    assert matched == {"alerts.yml"}
    rules = yaml.safe_load((here / "alerts.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    tests = (here / "tests" / "alerts_test.yml").read_text()
    for alert in alerts:
        assert f"alertname: {alert}" in tests, f"{alert} has no promtool test"


def test_dashboard_uses_the_provisioned_datasource() -> None:
    ds = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    assert [d["uid"] for d in ds["datasources"]] == [DATASOURCE_UID]
    for path in (DEPLOY / "grafana" / "dashboards").glob("*.json"):
        dash = json.loads(path.read_text())
        uids = set(re.findall(r'"uid":\s*"([^"]+)"', json.dumps(dash["panels"])))
        assert uids == {DATASOURCE_UID}, path.name
        exprs = re.findall(r'"expr":\s*"([^"]+)"', path.read_text())
        assert exprs and all("charger_" in e or "up{" in e for e in exprs)


# ---- Kubernetes ----
@pytest.fixture(scope="module")
def k8s() -> dict[str, dict[str, Any]]:
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    docs: dict[str, dict[str, Any]] = {}
    for name in kust["resources"]:
        for doc in yaml.safe_load_all((K8S / name).read_text()):
            if doc:
                assert doc["kind"] not in docs, doc["kind"]
                docs[doc["kind"]] = doc
    listed = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == set(kust["resources"]), "a manifest is missing from kustomization.yaml"
    return docs


def test_k8s_has_every_piece(k8s: dict[str, dict[str, Any]]) -> None:
    assert set(k8s) == {
        "ConfigMap",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "ScaledObject",
        "TriggerAuthentication",
    }


def test_k8s_worker_uses_the_project_image_and_settings(k8s: dict[str, dict[str, Any]]) -> None:
    spec = k8s["Deployment"]["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    repo, _, tag = c["image"].rpartition(":")
    assert repo == PROJECT_IMAGE and tag in {project_version(), "local"}
    cm = k8s["ConfigMap"]
    check_charger_vars(cm["data"], "ConfigMap")
    check_charger_vars({e["name"]: e for e in c["env"]}, "Deployment")
    assert [r["configMapRef"]["name"] for r in c["envFrom"]] == [cm["metadata"]["name"]]
    assert all(isinstance(v, str) for v in cm["data"].values())
    # Every value the ConfigMap sets is valid for Settings (with the Secrets' values).
    from_secrets = {"redis_password": "from-the-secret"}
    Settings(
        **{k.removeprefix("CHARGER_").lower(): v for k, v in cm["data"].items()}, **from_secrets
    )
    secret = {e["name"]: e for e in c["env"]}["CHARGER_REDIS_URL"]
    assert "secretKeyRef" in secret["valueFrom"]  # never in the ConfigMap
    assert "CHARGER_REDIS_URL" not in cm["data"]


def test_k8s_ports_probes_and_service(k8s: dict[str, dict[str, Any]]) -> None:
    cm = k8s["ConfigMap"]["data"]
    tpl = k8s["Deployment"]["spec"]["template"]
    (c,) = tpl["spec"]["containers"]
    (port,) = c["ports"]
    assert port["containerPort"] == web_port_arg(c["args"]) == int(cm["CHARGER_WEB_PORT"])
    assert port["containerPort"] in dockerfile_exposed()
    assert c["livenessProbe"]["httpGet"]["path"] == "/health" in routes()
    assert c["startupProbe"]["httpGet"]["path"] == "/health"
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready" in routes()
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert c[probe]["httpGet"]["port"] in (port["name"], port["containerPort"])
    ann = tpl["metadata"]["annotations"]
    assert int(ann["prometheus.io/port"]) == port["containerPort"]
    assert ann["prometheus.io/path"] in routes()

    svc = k8s["Service"]["spec"]
    labels = tpl["metadata"]["labels"]
    assert svc["selector"].items() <= labels.items()
    (sp,) = svc["ports"]
    assert sp["targetPort"] in (port["name"], port["containerPort"])
    dep_sel = k8s["Deployment"]["spec"]["selector"]["matchLabels"]
    assert dep_sel.items() <= labels.items()
    pdb = k8s["PodDisruptionBudget"]["spec"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    assert pdb.get("maxUnavailable") == 1 or pdb.get("minAvailable", 0) >= 1


def test_k8s_grace_period_covers_a_graceful_stop(k8s: dict[str, dict[str, Any]]) -> None:
    spec = k8s["Deployment"]["spec"]["template"]["spec"]
    assert 10 <= spec["terminationGracePeriodSeconds"] <= 120
    assert spec["securityContext"]["runAsNonRoot"] is True


def test_keda_scales_on_the_group_lag_up_to_the_partitions(
    k8s: dict[str, dict[str, Any]],
) -> None:
    cm = k8s["ConfigMap"]["data"]
    so = k8s["ScaledObject"]
    assert so["apiVersion"].startswith("keda.sh/")
    spec = so["spec"]
    assert spec["scaleTargetRef"]["name"] == k8s["Deployment"]["metadata"]["name"]
    partitions = int(cm["CHARGER_PARTITIONS"])
    assert partitions == names.DEFAULT_PARTITIONS
    for topic in names.CO_PARTITIONED:
        assert names.TOPICS[topic].partitions == partitions
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] <= partitions
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "kafka"
    md = trigger["metadata"]
    assert md["consumerGroup"] == cm["CHARGER_GROUP_ID"]
    assert md["bootstrapServers"] == cm["CHARGER_KAFKA_BOOTSTRAP"]
    assert md["topic"] == names.TELEPHONY_EVENTS
    assert int(md["lagThreshold"]) > 0


# ---- Redis ACL and secrets ----
def test_compose_redis_runs_the_acl_file_and_workers_log_in_as_its_user(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    redis = services["redis"]
    cmd = redis["command"]
    target = cmd[cmd.index("--aclfile") + 1]
    mounts = dict(v.split(":")[:2][::-1] for v in redis["volumes"])
    assert (ROOT / mounts[target]).resolve() == ACL_FILE
    acl = acl_users()
    env = services["worker"]["environment"]
    user = acl[env["CHARGER_REDIS_USERNAME"]]
    assert user.name == WORKER_USER and user.accepts(env["CHARGER_REDIS_PASSWORD"])
    assert f"~{env.get('CHARGER_REDIS_PREFIX', 'ch')}:*" in user.key_patterns
    assert "@" not in env["CHARGER_REDIS_URL"], "credentials go in their own variables"
    probe = redis["healthcheck"]["test"]
    assert acl[probe[probe.index("--user") + 1]].allowed == {"ping"}
    # Settings accept the workers' environment as it is.
    Settings(**{k.removeprefix("CHARGER_").lower(): v for k, v in env.items()})


def test_k8s_workers_use_the_acl_user_with_passwords_from_secrets(
    k8s: dict[str, dict[str, Any]],
) -> None:
    cm = k8s["ConfigMap"]["data"]
    user = acl_users()[cm["CHARGER_REDIS_USERNAME"]]
    assert user.name == WORKER_USER
    assert user.key_patterns == [f"~{cm['CHARGER_REDIS_PREFIX']}:*"]
    (c,) = k8s["Deployment"]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in c["env"]}
    for name in ("CHARGER_REDIS_PASSWORD", "CHARGER_KAFKA_SASL_PASSWORD"):
        assert "secretKeyRef" in env[name]["valueFrom"], name
    secret_like = re.compile(r"PASSWORD|_URL$")
    assert not [k for k in cm if secret_like.search(k)], "secrets belong in Secrets"
    mounted = {m["name"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in k8s["Deployment"]["spec"]["template"]["spec"]["volumes"]}
    assert mounted["tls"]["readOnly"] and volumes["tls"]["secret"]["optional"] is True


def test_kustomize_builds_the_manifests() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    out = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    kinds = {d["kind"] for d in yaml.safe_load_all(out.stdout) if d}
    assert {"Deployment", "ScaledObject", "PodDisruptionBudget"} <= kinds


def test_compose_runs_the_kafka_version_the_tests_run(compose: dict[str, Any]) -> None:
    from charger_tools.kafka_install import KAFKA_VERSIONS

    image = compose["services"]["kafka"]["image"]
    assert image == f"apache/kafka:{KAFKA_VERSIONS[0]}"
    environment = compose["services"]["kafka"]["environment"]
    assert environment["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert environment["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == 0
