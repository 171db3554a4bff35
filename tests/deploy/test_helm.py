"""The Helm chart (deploy/helm/cmet), offline: rendered by Helm's own Go SDK (helm-python-sdk, no helm binary),
every object checked against the Kubernetes API schemas (kubernetes-validate), the manifests scanned by checkov,
and what the chart promises read off the rendered objects: settings one-to-one, the GPU workers' grace and
autoscaling, probes, non-root, read-only root filesystems. Rendered for the default values and a GPU-heavy file."""

from __future__ import annotations

import copy
import functools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml

from cmet_jobs.settings import JobsSettings
from tests.deploy.helpers import ROOT

CHART = ROOT / "deploy" / "helm" / "cmet"
GPU_HEAVY = CHART / "ci" / "gpu-heavy-values.yaml"
KUBE_VERSIONS = {"default": "1.27.0", "gpu-heavy": "1.37.0"}
"""Each render against one Kubernetes version (both take seconds): the chart's floor (Chart.yaml kubeVersion)
and the newest schemas kubernetes-validate ships, where a removed API version would fail."""
CRDS = {"ScaledObject", "TriggerAuthentication", "ServiceMonitor"}
"""Kinds of KEDA and the Prometheus Operator: no schema offline; their fields are checked below."""
SET_BY_CHART = {"data_dir", "models_dir", "scratch_dir", "storage", "storage_dir", "device", "worker_metrics_port"}
NOT_DEPLOYED = {"test_data", "conformance_kit", "server"}
CHECKOV_PYTHON = Path(os.environ.get("CMET_CHECKOV_PYTHON", ROOT / ".venv-checkov" / "bin" / "python"))
"""checkov lives in a venv of its own (.ci/run makes it): its exact pins (boto3, packaging) conflict with the
project's dev extra (decision 0033)."""


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    with helm_python.Chart.load(str(CHART)) as chart:
        files = chart.render(values or {}, name="cmet", namespace="cmet", is_install=True)
    return [doc for text in files.values() for doc in yaml.safe_load_all(text) if doc]


@functools.cache
def _rendered(which: str) -> tuple[dict[str, Any], ...]:
    """Each values file rendered once for the module."""
    return tuple(render(yaml.safe_load(GPU_HEAVY.read_text()) if which == "gpu-heavy" else None))


def rendered(which: str) -> list[dict[str, Any]]:
    return copy.deepcopy(list(_rendered(which)))  # a copy: no test can change another's objects


@pytest.fixture(params=["default", "gpu-heavy"])
def objects(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return rendered(request.param)


@pytest.fixture
def heavy() -> list[dict[str, Any]]:
    return rendered("gpu-heavy")


def one(objects: list[dict[str, Any]], kind: str, suffix: str = "") -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"].endswith(suffix)]
    assert len(found) == 1, f"{kind} *{suffix}: {[o['metadata']['name'] for o in found]}"
    return found[0]


def pod_specs(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for o in objects:
        if o["kind"] in ("Deployment", "Job"):
            yield o["metadata"]["name"], o["spec"]["template"]["spec"]


def test_every_object_validates_against_the_kubernetes_schemas(
    objects: list[dict[str, Any]], request: pytest.FixtureRequest
) -> None:
    version = KUBE_VERSIONS[request.node.callspec.params["objects"]]
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy"} <= kinds
    assert {"ConfigMap", "Job", "ServiceAccount"} <= kinds
    for o in objects:
        if o["kind"] in CRDS:
            continue
        kubernetes_validate.validate(o, version, strict=True)  # strict: a misspelt or misplaced field fails too


def test_helm_lint_is_clean_in_strict_mode() -> None:
    for values in (None, yaml.safe_load(GPU_HEAVY.read_text())):
        report = helm_python.lint(str(CHART), values, strict=True, namespace="cmet", kube_version="v1.27.0")
        assert report["errors"] == []
        assert [m for m in report["messages"] if m["severity"] >= 2] == []  # warnings and errors; infos (an icon) pass


def test_values_map_one_to_one_onto_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    fields = set(JobsSettings.model_fields)
    config, secrets = set(values["config"]), set(values["secrets"])
    assert not (config | secrets) - fields, "values that are no setting"
    assert not config & secrets
    missing = fields - config - secrets - SET_BY_CHART - NOT_DEPLOYED
    assert not missing, f"settings the chart cannot set: {sorted(missing)}"
    # the ConfigMap's variables parse as the service's settings
    data = one(rendered("default"), "ConfigMap")["data"]
    assert {f"CMET_{name.upper()}" for name, v in values["config"].items() if v is not None} <= set(data)
    for name, value in data.items():  # as the pods' environment (envFrom)
        monkeypatch.setenv(name, value)
    parsed = JobsSettings()
    assert parsed.max_video_bytes == 524288000 and parsed.storage == "s3" and parsed.ready_needs_workers is False


def test_a_misspelt_setting_is_refused_by_the_values_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())["properties"]
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for part in ("config", "secrets"):  # the schema names exactly the settings values.yaml documents
        assert set(schema[part]["properties"]) == set(values[part]), part
    with pytest.raises(helm_python.HelmError, match="additional properties 'max_video_byte' not allowed"):
        render({"config": {"max_video_byte": 5}})


def test_secrets_are_the_releases_or_an_existing_one(heavy: list[dict[str, Any]]) -> None:
    own = render({"secrets": {"database_url": "postgresql+psycopg://u:p@db/cmet", "metrics_token": "t"}})
    secret = next(o for o in own if o["kind"] == "Secret" and o["metadata"]["name"] == "cmet")
    assert secret["stringData"] == {"CMET_DATABASE_URL": "postgresql+psycopg://u:p@db/cmet", "CMET_METRICS_TOKEN": "t"}
    # an existing Secret: the release makes none (not even the migration's hook copy) and every part reads it
    assert not [o for o in heavy if o["kind"] == "Secret"]
    for name, spec in pod_specs(heavy):
        for c in spec["containers"]:
            refs = [e["secretRef"]["name"] for e in c.get("envFrom", []) if "secretRef" in e]
            refs += [e["valueFrom"]["secretKeyRef"]["name"] for e in c.get("env", []) if "valueFrom" in e]
            assert refs == ["cmet-secrets"], name


def test_pods_run_as_non_root_on_read_only_root_filesystems(objects: list[dict[str, Any]]) -> None:
    for name, spec in pod_specs(objects):
        assert spec["securityContext"]["runAsNonRoot"] is True and spec["automountServiceAccountToken"] is False
        for c in spec["containers"] + spec.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, (name, c["name"])
            assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
            assert c["resources"]["limits"] and c["resources"]["requests"], (name, c["name"])


def test_api_probes_and_autoscaler(objects: list[dict[str, Any]]) -> None:
    api = one(objects, "Deployment", "-api")["spec"]["template"]["spec"]["containers"][0]
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    hpa = one(objects, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"].endswith("-api")
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"


def test_gpu_workers_take_one_gpu_each_and_a_grace_that_covers_the_hand_back(objects: list[dict[str, Any]]) -> None:
    workers = one(objects, "Deployment", "-gpu-worker")
    spec = workers["spec"]["template"]["spec"]
    worker = spec["containers"][0]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert {"name": "CMET_DEVICE", "value": "cuda:0"} in worker["env"]
    assert worker["command"][worker["command"].index("-Q") + 1] == "cmet-previews,cmet-edits"
    handback = float(one(objects, "ConfigMap")["data"]["CMET_JOB_HANDBACK_S"])
    assert spec["terminationGracePeriodSeconds"] >= handback + 30
    assert spec["tolerations"] and spec["nodeSelector"]
    mounts = {m["mountPath"]: m for m in worker["volumeMounts"]}
    assert mounts["/models"]["readOnly"] is True
    scratch = next(v for v in spec["volumes"] if v["name"] == mounts["/var/lib/cmet/scratch"]["name"])
    assert "emptyDir" in scratch  # each pod's own: never shared between hosts


def test_a_grace_shorter_than_the_hand_back_is_refused() -> None:
    with pytest.raises(helm_python.HelmError, match="must cover config.job_handback_s"):
        render({"config": {"job_handback_s": 100}, "gpuWorker": {"terminationGracePeriodSeconds": 110}})


def test_models_from_a_verifying_init_step_or_a_read_only_claim(heavy: list[dict[str, Any]]) -> None:
    spec = one(rendered("default"), "Deployment", "-gpu-worker")["spec"]["template"]["spec"]
    assert spec["initContainers"][0]["command"] == ["cmet-models-init"]  # keeps a set that verifies, else pulls
    spec = one(heavy, "Deployment", "-gpu-worker")["spec"]["template"]["spec"]
    assert "initContainers" not in spec
    models = next(v for v in spec["volumes"] if v["name"] == "models")
    assert models["persistentVolumeClaim"] == {"claimName": "cmet-models", "readOnly": True}


def test_keda_scales_gpu_workers_on_both_queues_previews_weighing_more(heavy: list[dict[str, Any]]) -> None:
    assert not [
        o for o in rendered("default") if o["kind"] in ("ScaledObject", "TriggerAuthentication")
    ]  # off by default
    scaled = one(heavy, "ScaledObject")["spec"]
    assert scaled["scaleTargetRef"]["name"] == one(heavy, "Deployment", "-gpu-worker")["metadata"]["name"]
    assert "replicas" not in one(heavy, "Deployment", "-gpu-worker")["spec"]  # KEDA owns the count
    assert scaled["minReplicaCount"] == 0 and scaled["maxReplicaCount"] == 32
    lists = {t["name"]: t["metadata"]["listName"] for t in scaled["triggers"] if t["type"] == "redis"}
    assert lists == {"edits": "cmet-edits", "previews": "cmet-previews"}
    modifiers = scaled["advanced"]["scalingModifiers"]
    assert modifiers["formula"] == "edits + 4 * previews + running" and modifiers["target"] == "3"
    running = next(t for t in scaled["triggers"] if t["type"] == "postgresql")
    assert "state = 'running'" in running["metadata"]["query"]
    down = scaled["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
    assert down["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 120}]
    auth = {o["metadata"]["name"]: o for o in heavy if o["kind"] == "TriggerAuthentication"}
    for t in scaled["triggers"]:
        assert t["authenticationRef"]["name"] in auth
    assert {r["key"] for a in auth.values() for r in a["spec"]["secretTargetRef"]} == {
        "KEDA_REDIS_PASSWORD",
        "KEDA_POSTGRESQL_CONNECTION",
    }


def test_migration_is_a_pre_install_and_pre_upgrade_job(objects: list[dict[str, Any]]) -> None:
    job = one(objects, "Job")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert "migrate(" in " ".join(job["spec"]["template"]["spec"]["containers"][0]["command"])


def test_metrics_scraped_with_the_token_from_the_secret(heavy: list[dict[str, Any]]) -> None:
    monitor = one(heavy, "ServiceMonitor")["spec"]
    api = next(e for e in monitor["endpoints"] if e["port"] == "http")
    assert api["authorization"] == {
        "type": "Bearer",
        "credentials": {"name": "cmet-secrets", "key": "CMET_METRICS_TOKEN"},
    }
    pod = one(rendered("default"), "Deployment", "-gpu-worker")["spec"]["template"]["metadata"]["annotations"]
    assert pod["prometheus.io/port"] == "9808"


def test_network_policies_default_deny_and_open_only_what_each_part_needs(objects: list[dict[str, Any]]) -> None:
    policies = {o["metadata"]["name"].removeprefix("cmet-"): o["spec"] for o in objects if o["kind"] == "NetworkPolicy"}
    assert set(policies) == {"base", "outside", "api", "worker-metrics"}
    assert policies["base"]["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in policies["base"]
    outside = policies["outside"]
    assert outside["podSelector"]["matchExpressions"][1]["values"] == ["api", "gpu-worker", "webhooks"]
    assert "10.0.0.0/8" in outside["egress"][0]["to"][0]["ipBlock"]["except"]
    assert [p["port"] for p in policies["api"]["ingress"][0]["ports"]] == [8000]


def test_checkov_finds_nothing_unwaived_and_every_waiver_has_a_reason(tmp_path: Path) -> None:
    if not CHECKOV_PYTHON.exists():
        pytest.skip(f"checkov's venv not at {CHECKOV_PYTHON} (.ci/run makes it; or set CMET_CHECKOV_PYTHON)")
    for name in ("default", "gpu-heavy"):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump_all(rendered(name)))
    scan = subprocess.run(
        [str(CHECKOV_PYTHON), str(Path(__file__).with_name("checkov_scan.py")), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert scan.returncode == 0, scan.stdout[-3000:] + scan.stderr[-3000:]
    report = json.loads(scan.stdout)
    assert report["failed"] == [], report["failed"]
    assert report["passed"] > 300  # the kubernetes checks ran
    assert report["skipped"] and all(len(s["reason"]) > 20 for s in report["skipped"]), report["skipped"]
    print(f"checkov: {report['passed']} passed, {len(report['skipped'])} waived", file=sys.stderr)
