"""The Kubernetes manifests in k8s/: valid resources, consistent with docker-compose.yml."""

import os
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from tests.deploy.deployment import (
    KUSTOMIZATION,
    built_services,
    compose,
    container_env,
    http_services,
    k8s_manifest_files,
    k8s_resource,
    k8s_resources,
    pod_labels,
    pod_spec,
    required_env_names,
    settings_class,
    settings_env_names,
    unread_env_names,
    without_file,
)

# The oldest Kubernetes the manifests target (autoscaling/v2 and batch/v1 CronJob are GA
# well before it) and the newest whose schemas kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.29", kubernetes_validate.latest_version())
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "CronJob")
# Compose service names use '_', which Kubernetes names (RFC 1123) do not allow.
K8S_NAMES = {name: name.replace("_", "-") for name in built_services()}
CLASS_SERVICES = sorted(name for name in built_services() if name.startswith("service_"))
SECRET_NAME = "mysql-credentials"


def workloads() -> list[dict]:
    return [r for r in k8s_resources() if r["kind"] in WORKLOAD_KINDS]


def workload_of(compose_name: str) -> dict:
    matches = [r for r in workloads() if r["metadata"]["name"] == K8S_NAMES[compose_name]]
    assert len(matches) == 1, f"expected one workload named {K8S_NAMES[compose_name]} in k8s/"
    return matches[0]


def main_container(workload: dict) -> dict:
    containers = pod_spec(workload)["containers"]
    assert len(containers) == 1, f"{workload['metadata']['name']}: expected one container"
    return containers[0]


def autoscaler_of(deployment: dict) -> dict:
    hpas = [
        r
        for r in k8s_resources()
        if r["kind"] == "HorizontalPodAutoscaler"
        and r["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    ]
    assert len(hpas) == 1, f"{deployment['metadata']['name']}: expected one HPA"
    return hpas[0]


def named_port(container: dict, port) -> int:
    if isinstance(port, int):
        return port
    numbers = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port]
    assert numbers, f"container {container['name']} has no port named {port!r}"
    return numbers[0]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifests_pass_kubernetes_validate_strict(version):
    failures = []
    for resource in k8s_resources():
        where = f"{resource['_file']}: {resource['kind']}/{resource['metadata']['name']}"
        try:
            kubernetes_validate.validate(without_file(resource), version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(part) for part in error.path)
            failures.append(f"{where}: {path}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            failures.append(f"{where}: {error.message}")
    assert not failures, f"invalid for Kubernetes {version}:\n" + "\n".join(failures)


def test_kustomization_applies_every_manifest():
    kustomization = yaml.safe_load(KUSTOMIZATION.read_text())
    listed = set(kustomization["resources"])
    present = {path.name for path in k8s_manifest_files()}
    assert listed == present, (
        f"not in kustomization.yaml: {sorted(present - listed)}; "
        f"listed but missing: {sorted(listed - present)}"
    )
    namespaces = [r["metadata"]["name"] for r in k8s_resources() if r["kind"] == "Namespace"]
    assert kustomization.get("namespace") in namespaces


def test_every_compose_service_has_a_workload():
    kinds = {name: workload_of(name)["kind"] for name in built_services()}
    assert kinds == {
        "api": "Deployment",
        "job": "CronJob",
        "proxy": "Deployment",
        "service_setosa": "Deployment",
        "service_versicolor": "Deployment",
        "service_virginica": "Deployment",
    }
    assert k8s_resource("StatefulSet", "mysql")


@pytest.mark.parametrize("name", sorted(built_services()))
def test_image_and_command_match_compose(name):
    service = built_services()[name]
    workload = workload_of(name)
    container = main_container(workload)
    assert container["image"] == service["image"], (
        f"{name}: k8s runs {container['image']}, compose builds {service['image']}"
    )
    expected = service["command"] + (["--once"] if workload["kind"] == "CronJob" else [])
    assert container["command"] == expected
    if container["image"].endswith(":latest"):
        assert container.get("imagePullPolicy") == "IfNotPresent", (
            f"{name}: a :latest image is pulled on every start unless IfNotPresent, which "
            "breaks images loaded into a local cluster"
        )


@pytest.mark.parametrize("name", sorted(built_services()))
def test_environment_is_read_by_the_process(name, monkeypatch):
    cls = settings_class(name)
    env = container_env(main_container(workload_of(name)))
    unread = unread_env_names(cls, set(env))
    assert not unread, f"k8s sets {sorted(unread)} for {name}; {cls.__name__} reads none of them"
    assert set(env) <= set(built_services()[name]["environment"]), (
        f"{name}: k8s sets {sorted(set(env) - set(built_services()[name]['environment']))}, "
        "which compose does not: keep the variable names of the two the same"
    )
    missing = required_env_names(cls) - set(env)
    assert not missing, f"{cls.__name__} has no default for {sorted(missing)}; k8s must set it"

    for variable in settings_env_names(cls) | {"MODE", "PORT"}:
        monkeypatch.delenv(variable, raising=False)
    for variable in [key for key in os.environ if key.startswith("SERVICE_")]:
        monkeypatch.delenv(variable)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    cls()  # the values parse


@pytest.mark.parametrize("name", sorted(http_services()))
def test_http_probes_hit_health_on_the_port_the_process_listens_on(name):
    container = main_container(workload_of(name))
    port = int(container_env(container)["PORT"])
    assert port == int(built_services()[name]["environment"]["PORT"]), (
        f"{name}: k8s PORT {port} differs from compose's"
    )
    assert [p["containerPort"] for p in container["ports"]] == [port]
    for probe in ("readinessProbe", "livenessProbe"):
        assert probe in container, f"{name}: no {probe}"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        if probe in container:
            get = container[probe].get("httpGet")
            assert get and get["path"] == "/health", f"{name}: {probe} must GET /health"
            assert named_port(container, get["port"]) == port, f"{name}: {probe} port"


@pytest.mark.parametrize("name", sorted(built_services()))
def test_containers_have_resource_requests_and_limits(name):
    resources = main_container(workload_of(name)).get("resources", {})
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources.get(kind, {})), (
            f"{name}: set resources.{kind}.cpu and .memory, got {resources}"
        )


def test_services_select_a_workload_and_forward_to_its_port():
    for service in (r for r in k8s_resources() if r["kind"] == "Service"):
        name = service["metadata"]["name"]
        selector = service["spec"]["selector"]
        selected = [w for w in workloads() if selector.items() <= pod_labels(w).items()]
        assert len(selected) == 1, f"Service {name} selects {len(selected)} workloads"
        container = main_container(selected[0])
        for port in service["spec"]["ports"]:
            target = named_port(container, port.get("targetPort", port["port"]))
            assert target == port["port"], (
                f"Service {name}: port {port['port']} forwards to {target}; keep them equal "
                "so a base URL works the same in compose and in the cluster"
            )


def test_proxy_backends_are_the_class_services_of_the_cluster():
    env = container_env(main_container(workload_of("proxy")))
    backends = {key: value for key, value in env.items() if key.startswith("SERVICE_")}
    assert len(backends) == len(CLASS_SERVICES)
    for variable, url in backends.items():
        parts = urlsplit(url)
        service = k8s_resource("Service", parts.hostname)
        assert parts.port in [p["port"] for p in service["spec"]["ports"]], (
            f"{variable}={url}: Service {parts.hostname} has no port {parts.port}"
        )
        selected = [
            w for w in workloads() if service["spec"]["selector"].items() <= pod_labels(w).items()
        ]
        mode = container_env(main_container(selected[0])).get("MODE")
        assert mode == variable.removeprefix("SERVICE_").lower(), (
            f"{variable} reaches a service with MODE={mode}"
        )


@pytest.mark.parametrize("name", CLASS_SERVICES)
def test_class_services_autoscale_on_cpu(name):
    deployment = workload_of(name)
    hpa = autoscaler_of(deployment)
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment"
    assert 1 <= hpa["spec"].get("minReplicas", 1) < hpa["spec"]["maxReplicas"]
    assert any(
        metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"
        for metric in hpa["spec"]["metrics"]
    )
    # Utilization is measured against the request; without one the HPA never scales.
    assert main_container(deployment)["resources"]["requests"]["cpu"]
    assert "replicas" not in deployment["spec"], (
        f"{name}: leave `replicas` out, or every `kubectl apply` resets what the HPA scaled"
    )


@pytest.mark.parametrize("name", ["api", "job"])
def test_the_schema_is_upgraded_in_an_init_container_before_the_process(name):
    workload = workload_of(name)
    init_containers = pod_spec(workload).get("initContainers", [])
    assert [container["name"] for container in init_containers] == ["migrate"]
    (migrate,) = init_containers
    main = main_container(workload)
    compose_migrate = compose()["services"]["migrate"]
    assert migrate["command"] == compose_migrate["command"]
    # The pod's own image carries the migrations its process needs.
    assert migrate["image"] == main["image"]
    assert migrate.get("imagePullPolicy") == main.get("imagePullPolicy")
    # The same database as the process, and only what DatabaseSettings reads.
    assert migrate.get("envFrom") == main.get("envFrom")
    password = next(item for item in migrate["env"] if item["name"] == "MYSQL_PASSWORD")
    assert password["valueFrom"]["secretKeyRef"]["name"] == SECRET_NAME
    assert not unread_env_names(settings_class("migrate"), set(container_env(migrate)))
    assert {"requests", "limits"} <= set(migrate.get("resources", {}))


def test_job_runs_once_per_schedule():
    cronjob = workload_of("job")
    assert cronjob["apiVersion"] == "batch/v1"
    assert main_container(cronjob)["command"][-1] == "--once"
    assert cronjob["spec"]["concurrencyPolicy"] in ("Allow", "Forbid")
    if cronjob["spec"]["concurrencyPolicy"] == "Forbid":
        # Under Forbid a hung run would block every later one.
        assert cronjob["spec"]["jobTemplate"]["spec"].get("activeDeadlineSeconds")
    assert pod_spec(cronjob)["restartPolicy"] in ("Never", "OnFailure")


def test_mysql_is_a_stateful_set_with_a_volume_claim_and_a_headless_service():
    statefulset = k8s_resource("StatefulSet", "mysql")
    service = k8s_resource("Service", statefulset["spec"]["serviceName"])
    assert service["spec"].get("clusterIP") == "None", "the StatefulSet's Service is headless"
    claims = {claim["metadata"]["name"] for claim in statefulset["spec"]["volumeClaimTemplates"]}
    container = main_container(statefulset)
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    assert any(mounts.get(claim) == "/var/lib/mysql" for claim in claims), (
        f"mysql data must live on a claim, got mounts {mounts} and claims {claims}"
    )
    mysql = compose()["services"]["mysql"]
    assert container["image"] == mysql["image"]
    assert container["args"] == mysql["command"], "keep the utf8mb4 flags of compose"
    assert set(container_env(container)) == set(mysql["environment"])
    database = k8s_resource("ConfigMap", "database-config")["data"]
    assert database["MYSQL_SERVER"] == service["metadata"]["name"]
    assert int(database["MYSQL_PORT"]) in [p["port"] for p in service["spec"]["ports"]]


def test_passwords_come_from_the_secret_and_no_secret_is_committed():
    assert not [r for r in k8s_resources() if r["kind"] == "Secret"], (
        "do not commit a Secret with a password; docs/deployment.md creates mysql-credentials"
    )
    for workload in workloads():
        for container in pod_spec(workload)["containers"]:
            for entry in container.get("env", []):
                if "PASSWORD" in entry["name"]:
                    ref = entry.get("valueFrom", {}).get("secretKeyRef")
                    assert ref and ref["name"] == SECRET_NAME and ref["key"] == entry["name"], (
                        f"{workload['metadata']['name']}: {entry['name']} must come from "
                        f"secretKeyRef {SECRET_NAME}/{entry['name']}, got {entry}"
                    )
    for config_map in (r for r in k8s_resources() if r["kind"] == "ConfigMap"):
        assert not [key for key in config_map["data"] if "PASSWORD" in key], (
            f"ConfigMap {config_map['metadata']['name']} holds a password"
        )


@pytest.mark.parametrize("name", CLASS_SERVICES)
def test_class_services_are_headless_and_rolled_without_losing_a_ready_replica(name):
    deployment = workload_of(name)
    # Headless: the name resolves to every ready pod, which the proxy balances itself.
    service = k8s_resource("Service", deployment["metadata"]["name"])
    assert service["spec"].get("clusterIP") == "None"
    strategy = deployment["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0
    assert strategy["rollingUpdate"]["maxSurge"] >= 1
    # Ready means answering /health; a pod takes calls only then.
    probe = main_container(deployment)["readinessProbe"]
    assert probe["httpGet"]["path"] == "/health"
    # Longer than uvicorn's graceful shutdown, so requests in flight finish.
    assert pod_spec(deployment)["terminationGracePeriodSeconds"] > 10
    hpa = autoscaler_of(deployment)
    assert hpa["spec"]["minReplicas"] >= 2, "one replica lost must leave the class answered"


@pytest.mark.parametrize("name", CLASS_SERVICES)
def test_a_disruption_budget_keeps_a_class_service_replica(name):
    deployment = workload_of(name)
    budgets = [
        r
        for r in k8s_resources()
        if r["kind"] == "PodDisruptionBudget"
        and r["spec"]["selector"]["matchLabels"].items() <= pod_labels(deployment).items()
    ]
    assert len(budgets) == 1, f"{name}: expected one PodDisruptionBudget"
    assert budgets[0]["apiVersion"] == "policy/v1"
    assert budgets[0]["spec"].get("minAvailable", 0) >= 1 or "maxUnavailable" in budgets[0]["spec"]


def test_the_job_runs_as_replicas_sharing_one_backlog():
    cronjob = workload_of("job")
    job_spec = cronjob["spec"]["jobTemplate"]["spec"]
    assert job_spec["parallelism"] >= 2
    # A work queue: no fixed completion count, the run ends when the backlog does.
    assert "completions" not in job_spec
    assert pod_spec(cronjob)["terminationGracePeriodSeconds"] > 0
