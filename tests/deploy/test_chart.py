"""The Helm chart, validated offline: rendered for every values file of its ``ci/`` folder
with Helm's own engine (helm-python-sdk), linted strictly, each object checked against the
Kubernetes API schemas of the oldest and newest versions the chart supports, and the
policies a production fleet relies on checked on what is rendered. The dashboard's queries
and the probes are checked against a live ``muse serve``."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import httpx
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from muse.serving.openapi import openapi_document
from tests.config_fixtures import Deployment as Quickstart
from tests.e2e.support import MuseProcess, readme_examples

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "muse"
VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
#: The chart's kubeVersion range, oldest and newest: every object must be valid in both.
KUBERNETES = ("1.27.0", "1.37.0")
#: Kinds of CRDs (Prometheus Operator) the Kubernetes schemas do not know; checked below.
CUSTOM_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}
POD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}

Objects = list[dict[str, Any]]


def render(values: dict[str, Any]) -> tuple[Objects, str]:
    """Every object the chart renders for ``values``, and its NOTES."""
    manifests = helm.Chart.load(CHART).render(values, name="risk", namespace="scoring")
    objects: Objects = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects, manifests.get("muse/templates/NOTES.txt", "")


def load_values(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict)
    return doc


@pytest.fixture(scope="module", params=VALUES, ids=[p.name for p in VALUES])
def rendered(request: pytest.FixtureRequest) -> tuple[str, Objects]:
    path: Path = request.param
    objects, _ = render(load_values(path))
    return path.name, objects


def of_kind(objects: Objects, kind: str) -> Objects:
    return [o for o in objects if o["kind"] == kind]


def by_name(objects: Objects, kind: str, name: str) -> dict[str, Any]:
    found = [o for o in of_kind(objects, kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
    return found[0]


def pod_specs(objects: Objects) -> Iterator[tuple[str, dict[str, Any]]]:
    for o in objects:
        if o["kind"] == "CronJob":
            yield f"CronJob/{o['metadata']['name']}", o["spec"]["jobTemplate"]["spec"]["template"]
        elif o["kind"] in POD_KINDS:
            template = o["spec"]["template"]
            yield f"{o['kind']}/{o['metadata']['name']}", template


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod["spec"].get("initContainers", []), *pod["spec"]["containers"]]


def replicas_deployment(objects: Objects) -> dict[str, Any]:
    return by_name(objects, "Deployment", "risk-muse")


# -- the chart as Helm sees it --------------------------------------------------------------


def test_there_is_a_values_file_per_shape_of_fleet() -> None:
    assert [p.name for p in VALUES] == [
        "minimal-values.yaml",
        "production-values.yaml",
        "redis-values.yaml",
        "triton-values.yaml",
    ]


@pytest.mark.parametrize("path", VALUES, ids=[p.name for p in VALUES])
def test_the_chart_lints_strictly(path: Path) -> None:
    for version in KUBERNETES:
        report = helm.lint(CHART, load_values(path), strict=True, kube_version=f"v{version}")
        assert report["errors"] == [], report
        worse_than_info = [m for m in report["messages"] if m["severity"] >= 2]
        assert worse_than_info == [], report


@pytest.mark.parametrize("version", KUBERNETES)
def test_every_object_is_valid_kubernetes(rendered: tuple[str, Objects], version: str) -> None:
    name, objects = rendered
    for o in objects:
        if (o["apiVersion"], o["kind"]) in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(o, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{name}: {o['kind']}/{o['metadata']['name']} on {version}: {e}")


def test_the_values_files_render_what_they_ask_for() -> None:
    kinds = {p.name: sorted({o["kind"] for o in render(load_values(p))[0]}) for p in VALUES}
    assert kinds["minimal-values.yaml"] == [
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Secret",
        "Service",
        "ServiceAccount",
    ]
    assert {"ServiceMonitor", "NetworkPolicy", "CronJob"} <= set(kinds["production-values.yaml"])
    assert "Secret" not in kinds["production-values.yaml"]  # the store's URL: existing Secret
    triton, _ = render(load_values(CHART / "ci" / "triton-values.yaml"))
    assert by_name(triton, "Deployment", "risk-muse-triton")
    assert by_name(triton, "Service", "risk-muse-triton")
    redis, _ = render(load_values(CHART / "ci" / "redis-values.yaml"))
    assert by_name(redis, "Deployment", "risk-muse-redis")
    assert "HorizontalPodAutoscaler" not in {o["kind"] for o in redis}
    assert replicas_deployment(redis)["spec"]["replicas"] == 2


# -- policies ---------------------------------------------------------------------------------


def test_images_are_pinned(rendered: tuple[str, Objects]) -> None:
    name, objects = rendered
    for pod, spec in pod_specs(objects):
        for c in containers(spec):
            image = c["image"]
            assert "@sha256:" in image or re.fullmatch(r"[^@]+:[^:/@]+", image), (name, pod, image)
            assert not image.endswith(":latest"), (name, pod, image)


def test_pods_run_as_non_root_on_a_read_only_root(rendered: tuple[str, Objects]) -> None:
    name, objects = rendered
    for pod, spec in pod_specs(objects):
        assert spec["spec"]["securityContext"]["runAsNonRoot"] is True, (name, pod)
        assert spec["spec"]["securityContext"]["runAsUser"] > 0, (name, pod)
        assert spec["spec"]["automountServiceAccountToken"] is False, (name, pod)
        for c in containers(spec):
            context = c["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, (name, pod, c["name"])
            assert context["allowPrivilegeEscalation"] is False, (name, pod, c["name"])
            assert context["capabilities"]["drop"] == ["ALL"], (name, pod, c["name"])


def test_every_container_has_resources(rendered: tuple[str, Objects]) -> None:
    name, objects = rendered
    for pod, spec in pod_specs(objects):
        for c in containers(spec):
            resources = c["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), (name, pod, c["name"])
            assert "memory" in resources["limits"], (name, pod, c["name"])


def test_a_rollout_never_removes_a_ready_replica_first(rendered: tuple[str, Objects]) -> None:
    name, objects = rendered
    for deployment in of_kind(objects, "Deployment"):
        strategy = deployment["spec"]["strategy"]
        if deployment["metadata"]["name"] == "risk-muse-redis":
            assert strategy["type"] == "Recreate"  # one instance, in-memory: nothing to keep
            continue
        assert strategy["rollingUpdate"]["maxUnavailable"] == 0, (name, deployment["metadata"])


def test_the_drain_fits_in_the_grace_period(rendered: tuple[str, Objects]) -> None:
    name, objects = rendered
    pod = replicas_deployment(objects)["spec"]["template"]["spec"]
    (muse,) = pod["containers"]
    command = muse["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"  # the image's own sleep (checked in test_image.py)
    assert int(command[1]) < pod["terminationGracePeriodSeconds"], name


def test_the_replicas_have_a_disruption_budget_and_an_autoscaler_on_them(
    rendered: tuple[str, Objects],
) -> None:
    name, objects = rendered
    deployment = replicas_deployment(objects)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    budgets = [
        p
        for p in of_kind(objects, "PodDisruptionBudget")
        if p["spec"]["selector"]["matchLabels"].items() <= labels.items()
    ]
    assert len(budgets) == 1, name
    for hpa in of_kind(objects, "HorizontalPodAutoscaler"):
        assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
        assert "replicas" not in deployment["spec"]  # the autoscaler owns the count


def test_selectors_and_ports_meet(rendered: tuple[str, Objects]) -> None:
    """Every Service, PDB, NetworkPolicy, spread constraint and ServiceMonitor selects pods
    the chart renders, on ports those pods declare."""
    name, objects = rendered
    pods = [spec for _, spec in pod_specs(objects)]

    def matching(selector: dict[str, str]) -> list[dict[str, Any]]:
        return [p for p in pods if selector.items() <= p["metadata"]["labels"].items()]

    for service in of_kind(objects, "Service"):
        (pod,) = matching(service["spec"]["selector"])
        declared = {port["name"] for c in pod["spec"]["containers"] for port in c["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= declared, name
    for policy in of_kind(objects, "NetworkPolicy"):
        (pod,) = matching(policy["spec"]["podSelector"]["matchLabels"])
        declared = {port["name"] for c in pod["spec"]["containers"] for port in c["ports"]}
        for rule in policy["spec"]["ingress"]:
            assert {p["port"] for p in rule["ports"]} <= declared, name
    for pod in pods:
        for spread in pod["spec"].get("topologySpreadConstraints", []):
            assert matching(spread["labelSelector"]["matchLabels"]) == [pod], name
    for monitor in of_kind(objects, "ServiceMonitor"):
        services = [
            s
            for s in of_kind(objects, "Service")
            if monitor["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
        ]
        assert len(services) == 1, name
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["port"] in {p["name"] for p in services[0]["spec"]["ports"]}
        assert endpoint["path"] == "/metrics"


def test_the_store_url_comes_from_a_secret(rendered: tuple[str, Objects]) -> None:
    name, objects = rendered
    (muse,) = replicas_deployment(objects)["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in muse["env"]}
    reference = env["MUSE_STORE"]["valueFrom"]["secretKeyRef"]
    secrets = {s["metadata"]["name"]: s for s in of_kind(objects, "Secret")}
    if name == "production-values.yaml":
        assert reference == {"name": "muse-store", "key": "url"}
        assert muse["envFrom"] == [{"secretRef": {"name": "muse-store-credentials"}}]
        assert env["MUSE_LAKE"]["value"] == "s3://risk-scores/lake"
    else:
        assert secrets[reference["name"]]["stringData"][reference["key"]] == (
            "s3://risk-scores/muse"
        )
    assert env["MUSE_REPLICA"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert "s3://" not in json.dumps(muse["args"])  # never in the pod spec in clear


def test_every_replica_argument_is_an_option_of_muse_serve(rendered: tuple[str, Objects]) -> None:
    """The container's args are parsed by `muse serve` itself: a renamed or removed option
    would crash-loop every pod."""
    import typer.main

    from muse.cli import app

    serve = typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]
    options = {o for p in serve.params for o in p.opts}
    _, objects = rendered
    (muse,) = replicas_deployment(objects)["spec"]["template"]["spec"]["containers"]
    args = muse["args"]
    assert args[0] == "serve"
    flags = [a for a in args[1:] if a.startswith("--")]
    assert flags
    assert set(flags) <= options, set(flags) - options
    assert args[args.index("--request-timeout") + 1] == "10"
    assert args[args.index("--keep-alive") + 1] == "5"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, "store.url or store.existingSecret is required"),
        (
            {"replica": {"preStopSeconds": 60, "terminationGracePeriodSeconds": 60}},
            "replica.preStopSeconds must be shorter than replica.terminationGracePeriodSeconds",
        ),
        ({"triton": {"enabled": True}}, "triton.modelRepository is required"),
        ({"redis": {"enabled": True, "externalUrl": "redis://r:6379"}}, "not both"),
        ({"image": {"tag": "latest"}}, "/image/tag"),
        ({"replica": {"securityContext": {"readOnlyRootFilesystem": False}}}, "readOnlyRoot"),
        ({"replica": {"podSecurityContext": {"runAsNonRoot": False}}}, "runAsNonRoot"),
        ({"replicas": 3}, "replicas"),  # a typo is not silently ignored
    ],
    ids=["no-store", "prestop", "triton-repo", "redis-twice", "latest", "rw-root", "root", "typo"],
)
def test_unsafe_or_incomplete_values_are_refused_by_name(
    values: dict[str, Any], message: str
) -> None:
    merged = {"store": {"url": "s3://risk-scores/muse"}, **values} if values else {}
    with pytest.raises(helm.HelmError) as caught:
        render(merged)
    assert message in str(caught.value)


def test_the_refresh_job_runs_the_tools_image_one_pass_at_a_time() -> None:
    objects, _ = render(load_values(CHART / "ci" / "production-values.yaml"))
    job = by_name(objects, "CronJob", "risk-muse-refresh")
    assert job["spec"]["concurrencyPolicy"] == "Forbid"
    (container,) = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["image"] == (  # the tools image, pinned by its own digest
        "registry.example.com/risk/muse@sha256:"
        "9a8b7c6d5e4f30211203f4e5d6c7b8a99a8b7c6d5e4f30211203f4e5d6c7b8a9"
    )
    assert container["args"][0] == "refresh"
    env = {e["name"]: e for e in container["env"]}
    assert env["MUSE_STORE"]["valueFrom"]["secretKeyRef"]["name"] == "muse-store"
    assert env["MUSE_LAKE"]["value"] == "s3://risk-scores/lake"
    minimal, _ = render({"store": {"url": "s3://b/m"}, "refresh": {"enabled": True}})
    (tools,) = by_name(minimal, "CronJob", "risk-muse-refresh")["spec"]["jobTemplate"]["spec"][
        "template"
    ]["spec"]["containers"]
    assert tools["image"] == "registry.example.com/muse:0.1.0-tools"


def test_the_console_runs_the_tools_image_with_options_of_muse_console() -> None:
    import typer.main

    from muse.cli import app

    command = typer.main.get_command(app).commands["console"]  # type: ignore[attr-defined]
    options = {o for p in command.params for o in p.opts}
    objects, _ = render(load_values(CHART / "ci" / "production-values.yaml"))
    console = by_name(objects, "Deployment", "risk-muse-console")
    (container,) = console["spec"]["template"]["spec"]["containers"]
    assert container["image"].endswith(
        "@sha256:1b2c3d4e5f60718293a4b5c6d7e8f9011b2c3d4e5f60718293a4b5c6d7e8f901"
    )
    assert container["args"][0] == "console"
    flags = {a for a in container["args"][1:] if a.startswith("--")}
    assert flags <= options, flags - options
    env = {e["name"]: e for e in container["env"]}
    assert env["MUSE_CONSOLE_SECRET"]["valueFrom"]["secretKeyRef"] == {
        "name": "muse-console",
        "key": "secret",
    }
    assert env["MUSE_STORE"]["valueFrom"]["secretKeyRef"]["name"] == "muse-store"
    assert not [o for o in of_kind(objects, "Secret") if "console" in o["metadata"]["name"]]
    by_name(objects, "Service", "risk-muse-console")

    minimal, _ = render({"store": {"url": "s3://b/m"}, "console": {"enabled": True}})
    made = by_name(minimal, "Secret", "risk-muse-console")
    assert len(made["data"]["secret"]) >= 48  # a random key the pods share
    (tools,) = by_name(minimal, "Deployment", "risk-muse-console")["spec"]["template"]["spec"][
        "containers"
    ]
    assert tools["image"] == "registry.example.com/muse:0.1.0-tools"
    off, _ = render({"store": {"url": "s3://b/m"}})
    assert not [o for o in off if "console" in o["metadata"]["name"]]
    policy = by_name(objects, "NetworkPolicy", "risk-muse-console")
    assert policy["spec"]["ingress"] == []  # production values name no peer: port-forward only


def test_notes_tell_the_next_commands() -> None:
    _, notes = render(load_values(CHART / "ci" / "triton-values.yaml"))
    assert "muse promote" in notes
    assert "muse versions --replicas" in notes
    assert "muse rollback" in notes
    assert "muse export triton-repository muse.yaml --out s3://risk-scores/triton-models" in notes
    assert "http://risk-muse-triton.scoring:8000" in notes
    _, notes = render(load_values(CHART / "ci" / "redis-values.yaml"))
    assert "redis://risk-muse-redis:6379/0" in notes


# -- against a live muse serve ---------------------------------------------------------------


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MuseProcess]:
    """The quickstart served, with traffic for a live and a shadowed tenant."""
    root = tmp_path_factory.mktemp("chart-live")
    quickstart = Quickstart.copy_quickstart(root / "quickstart")
    server = MuseProcess(quickstart.config, root / "serve.log").start()
    try:
        with server.client() as client:
            for path, body, _ in readme_examples():
                for tenant in ("bank1", "bank2", "fintech3"):
                    request = {**body, "intent": {**body["intent"], "tenant": tenant}}
                    assert client.post(path, json=request).status_code == 200
        yield server
    finally:
        server.stop()


def test_the_probes_are_routes_the_server_answers(live: MuseProcess) -> None:
    objects, _ = render(load_values(CHART / "ci" / "production-values.yaml"))
    (muse,) = replicas_deployment(objects)["spec"]["template"]["spec"]["containers"]
    paths = openapi_document()["paths"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        path = muse[probe]["httpGet"]["path"]
        assert "get" in paths[path], path
        assert muse[probe]["httpGet"]["port"] == "http"
        assert httpx.get(live.url + path, timeout=5).status_code == 200, path


def dashboard() -> dict[str, Any]:
    objects, _ = render(load_values(CHART / "ci" / "minimal-values.yaml"))
    (configmap,) = of_kind(objects, "ConfigMap")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    doc: dict[str, Any] = json.loads(configmap["data"]["muse.json"])
    return doc


def queries(doc: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]
    templating = doc["templating"]["list"]
    exprs += [v["definition"] for v in templating if "definition" in v]
    return exprs


#: What a dashboard panel must show (the issue's list), as metrics its queries read.
SHOWN = {
    "per-tenant score distribution": "muse_score",
    "latency percentiles per tenant and predictor": "muse_request_duration_seconds",
    "shadows shed": "muse_shadow_shed_total",
    "lake rows": "muse_lake_written_rows_total",
    "each replica's active version": "muse_version_info",
}


def test_the_dashboard_reads_only_metrics_muse_exports(live: MuseProcess) -> None:
    text = httpx.get(live.url + "/metrics", timeout=5).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    # The parser names counters without "_total"; queries name their samples.
    exported = set(families) | {f"{n}_total" for n, f in families.items() if f.type == "counter"}
    labels: dict[str, set[str]] = {}
    for f in families.values():
        for s in f.samples:
            labels.setdefault(f.name, set()).update(k for k in s.labels if k != "le")
    referenced: set[str] = set()
    for expr in queries(dashboard()):
        for metric, selector in re.findall(r"\b(muse_[a-z_]+)(\{[^}]*\})?", expr):
            family = re.sub(r"_(bucket|count|sum)$", "", metric)
            assert metric in exported or family in exported, f"{metric} in {expr}"
            referenced.add(family)
            known = labels.get(family.removesuffix("_total"))
            if known:  # a family with samples: its selectors name its labels
                used = set(re.findall(r"([a-z_]+)\s*=~?", selector or ""))
                assert used <= known | {"le"}, f"{metric}: {used - known} in {expr}"
    for what, metric in SHOWN.items():
        assert metric in referenced, f"the dashboard shows no {what} ({metric})"
    # grouping labels exist on what they group
    for expr in queries(dashboard()):
        for by, metric in re.findall(r"by \(([^)]*)\) \((?:rate|increase)?\(?(muse_[a-z_]+)", expr):
            family = re.sub(r"_(bucket|count|sum)$", "", metric).removesuffix("_total")
            known = labels.get(family)
            if known:
                assert {b.strip() for b in by.split(",")} <= known | {"le"}, expr
