"""Offline checks of the Kubernetes manifests in deploy/k8s (no cluster needed).

Core kinds are validated strictly (unknown fields are errors) against the
Kubernetes OpenAPI schemas that kubernetes-validate ships. KServe's
InferenceService is checked against the kserve SDK's own generated types, field
by field, and its pod part against the same Kubernetes schemas. The properties
that matter are then checked against the app itself (probe routes, port) and
the Dockerfile (user, writable paths).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import kserve.models as kserve_models
import kubernetes.client.models as k8s_models
import kubernetes_validate
import pytest
import yaml

from scripts.docker_stages import load_stages
from serving.config import ENV_NAMES, ServeConfig
from tests.conftest import REPO_ROOT

K8S_DIR = REPO_ROOT / "deploy" / "k8s"
KSERVE_DIR = K8S_DIR / "kserve"
KUSTOMIZATION = K8S_DIR / "kustomization.yaml"
# The oldest version the manifests need (the preStop `sleep` action is on by
# default from 1.30) and the newest the pinned kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.30", "1.37")
KSERVE_GROUP = "serving.kserve.io/"
KSERVE_CONTAINER = "kserve-container"  # the name KServe looks the predictor up by
# The labels KServe puts on an InferenceService's predictor pods.
KSERVE_POD_LABEL = "serving.kserve.io/inferenceservice"
KSERVE_COMPONENT_LABEL = "component"
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")
# Variables a container may set beyond serving/config.py's: KServe's protocol
# switch for custom predictors.
KSERVE_ENV = {"PROTOCOL"}
# README figures: launcher about 35 MiB, a worker at most 53 MiB (PSS).
LAUNCHER_MIB = 35
WORKER_MIB = 53
# The server exits within about SERVE_GRACEFUL_TIMEOUT + 1 s after SIGTERM.
EXIT_SLACK_S = 1


# --- helpers ---------------------------------------------------------------


def load_documents(path: Path) -> list[dict]:
    with path.open() as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc is not None]


def manifest_files() -> list[Path]:
    """Every manifest under deploy/k8s; kustomization.yaml is kustomize's own."""
    found = sorted(K8S_DIR.rglob("*.yaml")) + sorted(K8S_DIR.rglob("*.yml"))
    return [path for path in found if path.name != KUSTOMIZATION.name]


def all_documents() -> list[tuple[Path, int, dict]]:
    return [
        (path, index, doc)
        for path in manifest_files()
        for index, doc in enumerate(load_documents(path))
    ]


def is_kserve(doc: dict) -> bool:
    return doc["apiVersion"].startswith(KSERVE_GROUP)


def core_documents() -> list[tuple[Path, int, dict]]:
    return [item for item in all_documents() if not is_kserve(item[2])]


def the_one(kind: str, directory: Path = K8S_DIR) -> dict:
    """The single document of `kind` directly in `directory`."""
    found = [
        doc
        for path in sorted(directory.glob("*.yaml"))
        if path != KUSTOMIZATION
        for doc in load_documents(path)
        if doc["kind"] == kind
    ]
    assert len(found) == 1, f"expected one {kind} in {directory}, found {len(found)}"
    return found[0]


def validate_strictly(doc: dict, version: str) -> None:
    """Validate with unknown fields forbidden, against exactly `version`."""
    used = kubernetes_validate.validate(doc, version, strict=True)
    assert used == version, f"validated against {used}, not {version}"


def env_of(container: dict) -> dict[str, str]:
    values = {}
    for variable in container.get("env", []):
        assert "valueFrom" not in variable, variable
        values[variable["name"]] = variable["value"]
    return values


def cpu_cores(quantity: str) -> float:
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def mebibytes(quantity: str) -> float:
    units = {"Mi": 1, "Gi": 1024, "M": 1e6 / 2**20, "G": 1e9 / 2**20}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return float(quantity[: -len(suffix)]) * factor
    raise AssertionError(f"write memory in Mi or Gi, not {quantity!r}")


def container_port(container: dict, port: int | str) -> int:
    """The number of a port given by name or number, declared by the container."""
    declared = {p.get("name"): p["containerPort"] for p in container["ports"]}
    if isinstance(port, str):
        assert port in declared, f"no container port named {port!r}"
        return declared[port]
    assert port in declared.values(), f"port {port} is not declared"
    return port


def image_name(reference: str) -> str:
    """An image reference without its tag or digest."""
    name = reference.partition("@")[0]
    repository, colon, tag = name.rpartition(":")
    return repository if colon and "/" not in tag else name


def effective(setting: str, pod: dict, container: dict):
    """A security setting as the kubelet applies it: the container's wins."""
    container_context = container.get("securityContext", {})
    if setting in container_context:
        return container_context[setting]
    return pod.get("securityContext", {}).get(setting)


def under(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def serve_image() -> tuple[dict[str, str], str]:
    """The serve stage's ENV and USER, from the Dockerfile."""
    serve = load_stages()["serve"]
    (user,) = serve.all("USER")
    return serve.env(), user.value


# The kserve SDK names a few upstream types it does not define (its generator's
# names); these are the kubernetes client's models of the same objects.
SDK_TYPE_ALIASES = {
    "K8sIoApiAppsV1DeploymentStrategy": "V1DeploymentStrategy",
    "K8sIoApiAutoscalingV2HorizontalPodAutoscalerBehavior": (
        "V2HorizontalPodAutoscalerBehavior"
    ),
    "ResourceQuantity": "str",
}
PRIMITIVES = {"str": (str,), "int": (int,), "bool": (bool,), "float": (int, float)}
LIST_TYPE = re.compile(r"(?:list|List)\[(.+)\]")
DICT_TYPE = re.compile(r"(?:dict\(str, (.+)\)|Dict\[str, (.+)\])")


def sdk_model(name: str):
    """A model class of the kserve SDK, or of the kubernetes client it builds on."""
    for module in (kserve_models, k8s_models):
        model = getattr(module, name, None)
        if model is not None and hasattr(model, "attribute_map"):
            return model
    return None


def sdk_type_problems(value: object, type_name: str, where: str) -> list[str]:
    """What in `value` is not of the SDK type `type_name`: unknown fields, types.

    The SDK's models ignore unknown fields when they deserialize; this walks
    the document with their attribute maps, so a misspelled field is an error.
    """
    type_name = SDK_TYPE_ALIASES.get(type_name, type_name)
    if match := LIST_TYPE.fullmatch(type_name):
        if not isinstance(value, list):
            return [f"{where}: expected a list, got {value!r}"]
        return [
            problem
            for index, item in enumerate(value)
            for problem in sdk_type_problems(item, match[1], f"{where}[{index}]")
        ]
    if match := DICT_TYPE.fullmatch(type_name):
        if not isinstance(value, dict):
            return [f"{where}: expected a map, got {value!r}"]
        item_type = match[1] or match[2]
        return [
            problem
            for key, item in value.items()
            for problem in sdk_type_problems(item, item_type, f"{where}.{key}")
        ]
    if type_name == "object":  # IntOrString and free-form fields
        return []
    if type_name in PRIMITIVES:
        expected = PRIMITIVES[type_name]
        if isinstance(value, bool) and bool not in expected:
            return [f"{where}: expected {type_name}, got {value!r}"]
        if not isinstance(value, expected):
            return [f"{where}: expected {type_name}, got {value!r}"]
        return []
    model = sdk_model(type_name)
    if model is None:
        return [f"{where}: cannot check the SDK type {type_name}"]
    if not isinstance(value, dict):
        return [f"{where}: expected a {model.__name__} object, got {value!r}"]
    attribute_of = {key: attribute for attribute, key in model.attribute_map.items()}
    problems = []
    for key, item in value.items():
        if key not in attribute_of:
            problems.append(f"{where}.{key}: not a field of {model.__name__}")
            continue
        field_type = model.openapi_types[attribute_of[key]]
        problems += sdk_type_problems(item, field_type, f"{where}.{key}")
    return problems


def predictor_pod(isvc: dict) -> dict:
    """The predictor's pod fields (KServe inlines a PodSpec there), as a Pod."""
    pod_fields = set(k8s_models.V1PodSpec.attribute_map.values())
    predictor = isvc["spec"]["predictor"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": isvc["metadata"]["name"]},
        "spec": {key: value for key, value in predictor.items() if key in pod_fields},
    }


def the_container(pod_spec: dict) -> dict:
    (container,) = pod_spec["containers"]
    return container


# --- fixtures ----------------------------------------------------------------


@pytest.fixture(scope="module")
def deployment() -> dict:
    return the_one("Deployment")


@pytest.fixture(scope="module")
def pod_template(deployment) -> dict:
    return deployment["spec"]["template"]


@pytest.fixture(scope="module")
def api_container(pod_template) -> dict:
    return the_container(pod_template["spec"])


@pytest.fixture(scope="module")
def hpa() -> dict:
    return the_one("HorizontalPodAutoscaler")


@pytest.fixture(scope="module")
def isvc() -> dict:
    return the_one("InferenceService", KSERVE_DIR)


@pytest.fixture(scope="module")
def isvc_predictor(isvc) -> dict:
    return isvc["spec"]["predictor"]


@pytest.fixture(scope="module")
def predictor_container(isvc_predictor) -> dict:
    return the_container(isvc_predictor)


@pytest.fixture()
def unready_client(serve_config, predictor):
    """The app before its warm-up: live, not ready."""
    from serving.app import create_app

    return create_app(serve_config, predictor=predictor, warm=False).test_client()


# --- schemas -------------------------------------------------------------------


def test_the_manifests_are_where_the_docs_say():
    kinds = {doc["kind"] for _, _, doc in all_documents()}
    assert {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ServiceAccount",
        "InferenceService",
    } <= kinds
    for path, _, doc in all_documents():
        # KServe's resources live apart: `kubectl apply -k deploy/k8s` needs
        # no KServe in the cluster.
        if is_kserve(doc):
            assert path.parent == KSERVE_DIR, path


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize(
    "document",
    core_documents(),
    ids=lambda item: f"{item[0].relative_to(K8S_DIR)}#{item[1]}",
)
def test_every_core_manifest_validates_strictly(document, version):
    _, _, doc = document
    validate_strictly(doc, version)


def test_strict_validation_rejects_a_misspelled_field_and_a_wrong_type(deployment):
    misspelled = copy.deepcopy(deployment)
    container = the_container(misspelled["spec"]["template"]["spec"])
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        validate_strictly(misspelled, KUBERNETES_VERSIONS[-1])
    unquoted = copy.deepcopy(deployment)
    container = the_container(unquoted["spec"]["template"]["spec"])
    container["env"][0]["value"] = 2  # env values are strings
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_strictly(unquoted, KUBERNETES_VERSIONS[-1])


def test_the_inference_service_has_only_kserve_fields(isvc):
    assert sdk_type_problems(isvc, "V1beta1InferenceService", "isvc") == []


def test_the_kserve_check_finds_unknown_fields_and_wrong_types(isvc):
    broken = copy.deepcopy(isvc)
    predictor = broken["spec"]["predictor"]
    # protocolVersion exists on the model spec, not on a custom predictor.
    predictor["protocolVersion"] = "v2"
    predictor["scaleTarget"] = "70"
    container = the_container(predictor)
    container["readinesProbe"] = container.pop("readinessProbe")
    assert sdk_type_problems(broken, "V1beta1InferenceService", "isvc") == [
        "isvc.spec.predictor.scaleTarget: expected int, got '70'",
        "isvc.spec.predictor.containers[0].readinesProbe: not a field of V1Container",
        "isvc.spec.predictor.protocolVersion: not a field of V1beta1PredictorSpec",
    ]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_the_predictor_pod_validates_strictly(isvc, version):
    validate_strictly(predictor_pod(isvc), version)


def test_kustomization_applies_every_core_manifest_with_the_image(deployment):
    kustomization = load_documents(KUSTOMIZATION)[0]
    assert kustomization["kind"] == "Kustomization"
    resources = kustomization["resources"]
    assert sorted(resources) == sorted(
        path.name for path in manifest_files() if path.parent == K8S_DIR
    )
    image = the_container(deployment["spec"]["template"]["spec"])["image"]
    (entry,) = kustomization["images"]
    assert entry["name"] == image_name(image)


# --- the Deployment ------------------------------------------------------------


def probe_paths_answering(app, client, unready_client, container) -> dict:
    """The container's probe paths, checked to be GET routes of the app that
    answer 200 once warm; before the warm-up, live (never restarted for it)
    but not ready (no traffic)."""
    paths = {probe: container[probe]["httpGet"]["path"] for probe in PROBES}
    adapter = app.url_map.bind("localhost")
    for path in paths.values():
        adapter.match(path, method="GET")  # raises if no such GET route
        assert client.get(path).status_code == 200, path
    assert unready_client.get(paths["livenessProbe"]).status_code == 200
    assert unready_client.get(paths["startupProbe"]).status_code == 200
    assert unready_client.get(paths["readinessProbe"]).status_code == 503
    return paths


def test_probes_ask_the_app_routes_that_mean_live_and_ready(
    app, client, unready_client, api_container
):
    paths = probe_paths_answering(app, client, unready_client, api_container)
    assert paths["readinessProbe"] == "/readyz"
    assert paths["livenessProbe"] == "/healthz"


def test_the_container_listens_where_port_service_and_probes_say(
    api_container, deployment
):
    env = env_of(api_container)
    config = ServeConfig.from_env(env)
    (port,) = api_container["ports"]
    assert config.port == port["containerPort"]
    assert config.host == "0.0.0.0"
    image_env, _ = serve_image()
    assert image_env["PORT"] == str(port["containerPort"])
    for probe in PROBES:
        declared = api_container[probe]["httpGet"]["port"]
        assert container_port(api_container, declared) == config.port, probe
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(config.port)
    assert annotations["prometheus.io/path"] == "/metrics"


def test_every_variable_is_a_setting_the_server_reads(api_container):
    env = env_of(api_container)
    assert set(env) <= set(ENV_NAMES.values())
    ServeConfig.from_env(env)  # raises ConfigError on a bad value


def test_workers_match_the_cpu_and_memory_has_headroom(api_container):
    resources = api_container["resources"]
    # Guaranteed QoS: requests equal limits.
    assert resources["requests"] == resources["limits"]
    workers = ServeConfig.from_env(env_of(api_container)).workers
    cpu = cpu_cores(resources["limits"]["cpu"])
    assert workers == cpu, "SERVE_WORKERS must match the CPU limit, one per core"
    steady = LAUNCHER_MIB + WORKER_MIB * workers
    # Request bodies held by the worker threads come on top of the steady
    # figure (about 400 MiB in all with 64 threads holding 1024-row bodies).
    assert mebibytes(resources["limits"]["memory"]) >= 2 * steady


def test_runs_as_the_image_user_without_privileges(pod_template, api_container):
    pod = pod_template["spec"]
    _, image_user = serve_image()
    uid, gid = (int(part) for part in image_user.split(":"))
    assert effective("runAsNonRoot", pod, api_container) is True
    assert effective("runAsUser", pod, api_container) == uid
    assert effective("runAsGroup", pod, api_container) == gid
    assert effective("seccompProfile", pod, api_container) == {"type": "RuntimeDefault"}
    context = api_container["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context.get("privileged", False) is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False
    for host_namespace in ("hostNetwork", "hostPID", "hostIPC"):
        assert not pod.get(host_namespace), host_namespace


def test_every_path_the_server_writes_is_a_bounded_empty_dir(
    pod_template, api_container
):
    pod = pod_template["spec"]
    image_env, _ = serve_image()
    env = {**image_env, **env_of(api_container)}
    assert "XDG_CACHE_HOME" in env, "onnxruntime caches in $HOME/.cache: mount it"
    # The metrics directory (mkdtemp unless set), and onnxruntime's cache.
    metrics = env.get("PROMETHEUS_MULTIPROC_DIR") or env.get("TMPDIR", "/tmp")
    written = [metrics, env["XDG_CACHE_HOME"]]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = api_container["volumeMounts"]
    for path in written:
        (mount,) = [m for m in mounts if under(path, m["mountPath"])]
        assert not mount.get("readOnly"), path
        empty_dir = volumes[mount["name"]]["emptyDir"]
        assert "sizeLimit" in empty_dir, f"{mount['name']} has no sizeLimit"


def test_grace_period_outlasts_the_pre_stop_pause_and_the_drain(
    pod_template, api_container
):
    pod = pod_template["spec"]
    pause = api_container["lifecycle"]["preStop"]["sleep"]["seconds"]
    # Long enough for the endpoint removal to reach kube-proxy and ingresses.
    assert pause >= 3
    drain = ServeConfig.from_env(env_of(api_container)).graceful_timeout
    assert pod["terminationGracePeriodSeconds"] > pause + drain + EXIT_SLACK_S


def test_no_replica_count_fights_the_autoscaler(deployment):
    assert "replicas" not in deployment["spec"]


def test_selectors_match_the_pod_labels(deployment, pod_template):
    labels = pod_template["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    service = the_one("Service")
    assert service["spec"]["selector"] == selector
    pdb = the_one("PodDisruptionBudget")
    assert pdb["spec"]["selector"] == {"matchLabels": selector}
    for constraint in pod_template["spec"]["topologySpreadConstraints"]:
        assert constraint["labelSelector"]["matchLabels"] == selector


def test_the_service_reaches_the_container_port(api_container):
    service = the_one("Service")
    (port,) = service["spec"]["ports"]
    target = container_port(api_container, port["targetPort"])
    assert target == api_container["ports"][0]["containerPort"]


def test_the_service_account_is_ours_and_mounts_no_token(pod_template):
    account = the_one("ServiceAccount")
    assert pod_template["spec"]["serviceAccountName"] == account["metadata"]["name"]
    assert account["automountServiceAccountToken"] is False


def test_the_autoscaler_scales_the_deployment_on_cpu(hpa, deployment):
    spec = hpa["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": deployment["apiVersion"],
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    (metric,) = spec["metrics"]
    assert metric["resource"]["name"] == "cpu"
    target = metric["resource"]["target"]
    assert target["type"] == "Utilization"
    assert 50 <= target["averageUtilization"] <= 80  # headroom before saturation
    assert 2 <= spec["minReplicas"] <= spec["maxReplicas"]


def test_the_disruption_budget_lets_drains_proceed_and_keeps_one_up(hpa):
    pdb = the_one("PodDisruptionBudget")["spec"]
    smallest = hpa["spec"]["minReplicas"]
    # A number of pods: a percentage would round with the replica count.
    budget = pdb.get("maxUnavailable", pdb.get("minAvailable"))
    assert isinstance(budget, int), budget
    assert 1 <= budget < smallest
    assert pdb["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


# --- the KServe InferenceService -------------------------------------------------


def test_kserve_runs_the_same_image_on_its_declared_port(
    predictor_container, api_container
):
    assert predictor_container["name"] == KSERVE_CONTAINER
    assert predictor_container["image"] == api_container["image"]
    env = env_of(predictor_container)
    assert set(env) <= set(ENV_NAMES.values()) | KSERVE_ENV
    assert env["PROTOCOL"] == "v2"  # KServe's switch for a custom predictor
    config = ServeConfig.from_env(env)
    # KServe's Service targets the first declared port: the server must listen
    # there, and it listens where PORT says.
    assert config.port == predictor_container["ports"][0]["containerPort"]
    for probe in PROBES:
        declared = predictor_container[probe]["httpGet"]["port"]
        assert container_port(predictor_container, declared) == config.port, probe


def test_kserve_probes_ask_the_open_inference_protocol_routes(
    app, client, unready_client, predictor_container
):
    paths = probe_paths_answering(app, client, unready_client, predictor_container)
    assert paths["readinessProbe"] == "/v2/health/ready"
    assert paths["livenessProbe"] == "/v2/health/live"


def test_kserve_is_named_after_the_model_it_serves(client, isvc):
    # KServe's paths name the InferenceService: /v2/models/<name>/infer.
    assert isvc["metadata"]["name"] in client.get("/v2/models").get_json()["models"]


def test_kserve_deploys_and_scales_like_the_deployment(isvc, isvc_predictor, hpa):
    annotations = isvc["metadata"]["annotations"]
    # Standard mode: a Deployment of KServe's, where the container's own PORT
    # and /tmp mount are allowed (Knative reserves both).
    assert annotations["serving.kserve.io/deploymentMode"] == "Standard"
    assert annotations["serving.kserve.io/autoscalerClass"] == "hpa"
    target = hpa["spec"]["metrics"][0]["resource"]["target"]
    assert isvc_predictor["scaleMetric"] == "cpu"
    assert isvc_predictor["scaleTarget"] == target["averageUtilization"]
    assert isvc_predictor["minReplicas"] == hpa["spec"]["minReplicas"]
    assert isvc_predictor["maxReplicas"] == hpa["spec"]["maxReplicas"]


def test_kserve_pods_are_sized_and_locked_down_like_the_deployment(
    isvc_predictor, predictor_container, pod_template, api_container
):
    pod = pod_template["spec"]
    for field in (
        "securityContext",
        "automountServiceAccountToken",
        "enableServiceLinks",
        "terminationGracePeriodSeconds",
        "volumes",
    ):
        assert isvc_predictor[field] == pod[field], field
    for field in ("resources", "securityContext", "lifecycle", "volumeMounts"):
        assert predictor_container[field] == api_container[field], field
    for probe in PROBES:
        timing = {k: v for k, v in predictor_container[probe].items() if k != "httpGet"}
        expected = {k: v for k, v in api_container[probe].items() if k != "httpGet"}
        assert timing == expected, probe
    same_env = {"PORT", *KSERVE_ENV}
    assert {
        k: v for k, v in env_of(predictor_container).items() if k not in same_env
    } == {k: v for k, v in env_of(api_container).items() if k not in same_env}


def test_kserve_pod_selectors_use_the_labels_kserve_sets(isvc, isvc_predictor):
    labels = {
        KSERVE_POD_LABEL: isvc["metadata"]["name"],
        KSERVE_COMPONENT_LABEL: "predictor",
    }
    pdb = the_one("PodDisruptionBudget", KSERVE_DIR)
    assert pdb["spec"]["selector"] == {"matchLabels": labels}
    for constraint in isvc_predictor["topologySpreadConstraints"]:
        assert constraint["labelSelector"]["matchLabels"] == labels
