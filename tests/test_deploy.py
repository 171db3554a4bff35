"""The compose deployment, checked offline: docker-compose.yml, .env.example, deploy/.

Always: the files' structure (healthchecks, one-shots, GPU reservations, pinned tags, volumes,
scrape targets, dashboard metric names against the metrics the code defines, Dockerfiles against
pyproject) and the init scripts run against stub `mc` / `cmet` commands. Where the tools exist:
`docker-compose config -q` (Debian package docker-compose; no Docker engine is needed) and
`promtool check config` (Debian package prometheus); otherwise those tests skip with the reason.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DEPLOY = ROOT / "deploy"
PROMETHEUS = DEPLOY / "prometheus.yml"
DASHBOARDS = DEPLOY / "grafana" / "dashboards"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources"
DOCKERFILES = {"api": DEPLOY / "Dockerfile.api", "worker": DEPLOY / "Dockerfile.worker"}

SECRETS = {"POSTGRES_PASSWORD", "REDIS_PASSWORD", "MINIO_ROOT_PASSWORD", "CMET_S3_SECRET_ACCESS_KEY", "GRAFANA_ADMIN_PASSWORD"}
REQUIRED_SERVICES = {"api", "migrate", "models", "worker-gpu0", "worker-gpu1", "redis", "postgres", "minio", "minio-init", "prometheus", "grafana"}
# the panels the dashboard must have, by the metric each one plots
DASHBOARD_METRICS = {
    "cmet_jobs_total", "cmet_queue_wait_seconds", "cmet_stage_duration_seconds", "cmet_frames_processed_total",
    "cmet_gpu_memory_bytes", "cmet_webhook_deliveries_total", "cmet_http_requests_total", "cmet_http_request_duration_seconds",
}
_VAR = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


# --- helpers ----------------------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _services() -> dict[str, dict[str, Any]]:
    return _compose()["services"]


def _env_example() -> dict[str, str]:
    env = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f".env.example line without '=': {line!r}"
            env[key.strip()] = value.strip()
    return env


def _example_env_with_secrets() -> dict[str, str]:
    env = _env_example()
    env.update({name: f"test-{name.lower().replace('_', '-')}-0123456789" for name in SECRETS})
    return env


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return []


def _variables() -> dict[str, set[tuple[str, str]]]:
    """Every ${VAR...} of the compose file (comments excluded): name -> {(operator, default or message)}."""
    found: dict[str, set[tuple[str, str]]] = {}
    for text in _strings(_compose()):
        for m in _VAR.finditer(text.replace("$$", "")):
            found.setdefault(m.group(1), set()).add((m.group(2) or "", m.group(3) or ""))
    return found


def _interpolate(text: str, env: dict[str, str]) -> str:
    def one(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2) or "", m.group(3) or ""
        value = env.get(name)
        if op in (":-", "-") and (value is None or (op == ":-" and value == "")):
            return arg
        if op in (":?", "?") and (value is None or (op == ":?" and value == "")):
            raise AssertionError(f"required variable {name} unset: {arg}")
        return value or ""

    return _VAR.sub(one, text.replace("$$", "\0")).replace("\0", "$")


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def _one_shots(services: dict[str, dict[str, Any]]) -> set[str]:
    """Services something waits on to have completed successfully."""
    return {
        name
        for svc in services.values()
        for name, dep in (svc.get("depends_on") or {}).items()
        if isinstance(dep, dict) and dep.get("condition") == "service_completed_successfully"
    }


def _workers(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in services.items() if name.startswith("worker-")}


def _named_mounts(service: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(source, target, mode) of each short-syntax volume entry."""
    out = []
    for entry in service.get("volumes") or []:
        parts = entry.split(":")
        out.append((parts[0], parts[1], parts[2] if len(parts) > 2 else "rw"))
    return out


def _code_metrics() -> dict[str, tuple[str, set[str]]]:
    """Metrics the service and the worker define: name -> (type, label names)."""
    pattern = re.compile(r"\b(Counter|Histogram|Gauge|Summary)\(\s*\"(\w+)\"\s*,\s*\"[^\"]*\"\s*(?:,\s*\[([^\]]*)\])?")
    found = {}
    for path in (ROOT / "service" / "metrics.py", ROOT / "worker" / "metrics.py"):
        for kind, name, labels in pattern.findall(path.read_text()):
            found[name] = (kind, set(re.findall(r"\"(\w+)\"", labels or "")))
    return found


_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset", "inf", "nan"}


def _promql_metrics(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, grouping label names) of a PromQL expression (enough for the dashboard's)."""
    grouping = {label.strip() for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr) for label in group.split(",") if label.strip()}
    stripped = re.sub(r"\{[^}]*\}", " ", expr)  # label matchers
    stripped = re.sub(r"\[[^\]]*\]", " ", stripped)  # range selectors, $__rate_interval
    stripped = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", " ", stripped)
    stripped = re.sub(r"\"[^\"]*\"|'[^']*'", " ", stripped)
    names = set()
    for m in re.finditer(r"(?<![\w$.])([A-Za-z_:][\w:]*)(\s*\()?", stripped):
        if m.group(2) or m.group(1).lower() in _PROMQL_WORDS:
            continue  # a function or a keyword
        names.add(m.group(1))
    return names, grouping


def _exposed_names(metrics: dict[str, tuple[str, set[str]]]) -> dict[str, str]:
    """Series names a scrape shows -> the metric they belong to."""
    out = {}
    for name, (kind, _) in metrics.items():
        out[name] = name
        if kind in ("Histogram", "Summary"):
            for suffix in ("_bucket", "_sum", "_count"):
                out[name + suffix] = name
    return out


def _dockerfile(kind: str) -> tuple[list[str], dict[str, str]]:
    """Instructions (continuations joined, comments dropped) and ARG defaults."""
    lines, current = [], ""
    for raw in DOCKERFILES[kind].read_text().splitlines():
        if raw.strip().startswith("#") and not current:
            continue
        current += raw.rstrip("\\").strip() + " " if raw.rstrip().endswith("\\") else raw.strip()
        if not raw.rstrip().endswith("\\"):
            if current.strip():
                lines.append(current.strip())
            current = ""
    args = {}
    for line in lines:
        m = re.match(r"ARG\s+(\w+)=(.*)", line)
        if m:
            args.setdefault(m.group(1), m.group(2).strip().strip('"'))
    return lines, args


def _requirements_module() -> Any:
    """deploy/pyproject_requirements.py (deploy/ is no package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("cmet_deploy_requirements", DEPLOY / "pyproject_requirements.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sanitized_env(**extra: str) -> dict[str, str]:
    """The process environment without anything compose would interpolate from."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")}
    return {**keep, **extra}


def _run_stubbed(script: Path, stubs: dict[str, str], env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, body in stubs.items():
        stub = bin_dir / name
        stub.write_text("#!/bin/sh\n" + body)
        stub.chmod(0o755)
    full_env = _sanitized_env(PATH=f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}", TMPDIR=str(tmp_path), **env)
    return subprocess.run(["sh", str(script)], env=full_env, capture_output=True, text=True, timeout=60)


# --- the compose file ---------------------------------------------------------------------------


def test_compose_has_the_services() -> None:
    services = _services()
    assert REQUIRED_SERVICES <= set(services), f"missing: {REQUIRED_SERVICES - set(services)}"
    assert "version" not in _compose(), "the Compose Specification has no top-level version"


def test_every_service_has_a_healthcheck_or_is_a_one_shot() -> None:
    services = _services()
    one_shots = _one_shots(services)
    assert {"migrate", "models", "minio-init"} <= one_shots
    for name, svc in services.items():
        if name in one_shots:
            assert svc.get("restart", "no") == "no", f"one-shot {name} must not restart"
            assert "healthcheck" not in svc, f"one-shot {name} needs no healthcheck"
            continue
        check = svc.get("healthcheck")
        assert check and not check.get("disable") and check.get("test"), f"{name} has no healthcheck"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), f"{name}: healthcheck test {check['test']!r}"
        for key in ("interval", "timeout", "retries"):
            assert key in check, f"{name}: healthcheck without {key}"
        assert svc.get("restart") == "unless-stopped", f"long-running {name} should restart"


def test_depends_on_waits_on_conditions() -> None:
    services = _services()
    one_shots = _one_shots(services)
    for name, svc in services.items():
        deps = svc.get("depends_on") or {}
        assert isinstance(deps, dict), f"{name}: depends_on needs conditions, not a list"
        for dep, spec in deps.items():
            assert dep in services, f"{name} depends on unknown {dep}"
            condition = spec.get("condition")
            if condition == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep} to be healthy, which has no healthcheck"
            else:
                assert condition == "service_completed_successfully" and dep in one_shots, f"{name} -> {dep}: {condition}"
            assert "profiles" not in services[dep], f"{name} depends on {dep}, which only runs under a profile"
    api_deps = services["api"]["depends_on"]
    assert {"postgres", "redis", "minio-init", "migrate"} <= set(api_deps)
    for worker in _workers(services).values():
        assert {"postgres", "redis", "minio-init", "migrate", "models"} <= set(worker["depends_on"])


def test_api_runs_uvicorn_with_a_healthz_check() -> None:
    from service.routes import system

    api = _services()["api"]
    assert api["command"][:2] == ["uvicorn", "service.app:app"]
    assert "/healthz" in " ".join(api["healthcheck"]["test"])
    assert "/healthz" in {route.path for route in system.router.routes}
    assert "build" in api and api["build"]["dockerfile"] == "deploy/Dockerfile.api"
    # several uvicorn processes share /metrics through prometheus-client's multiprocess folder, on a tmpfs
    env = _environment(api)
    assert env.get("PROMETHEUS_MULTIPROC_DIR") in api.get("tmpfs", [])


@pytest.mark.parametrize("env_source", ["example", "defaults"])
def test_workers_reserve_one_gpu_each_and_run_celery(env_source: str) -> None:
    services = _services()
    env = _example_env_with_secrets() if env_source == "example" else _secrets_only()
    workers = _workers(services)
    assert {"worker-gpu0", "worker-gpu1"} <= set(workers)
    assert "profiles" not in workers["worker-gpu0"], "the first GPU worker runs by default"
    assert "gpu2" in workers["worker-gpu1"]["profiles"]
    device_ids = []
    for name, svc in workers.items():
        devices = svc["deploy"]["resources"]["reservations"]["devices"]
        assert len(devices) == 1, name
        device = devices[0]
        assert device["driver"] == "nvidia" and "gpu" in device["capabilities"], name
        assert "count" not in device and len(device["device_ids"]) == 1, f"{name} pins one device id"
        device_ids.append(_interpolate(str(device["device_ids"][0]), env))
        worker_env = _environment(svc)
        # the container sees only its reserved GPU, as device 0
        assert worker_env["CMET_DEVICE"] == "cuda:0" and worker_env["CUDA_VISIBLE_DEVICES"] == "0", name
        command = svc["command"]
        assert command[:4] == ["celery", "-A", "worker.celery_app", "worker"], name
        assert command[command.index("-Q") + 1] == "${CMET_QUEUE:-cmet-edits}" == worker_env["CMET_QUEUE"], name
        assert "ping" in " ".join(svc["healthcheck"]["test"]), name
        assert svc["build"]["dockerfile"] == "deploy/Dockerfile.worker", name
        assert svc.get("hostname") == name, f"{name}: a stable celery node name"
    assert len(set(device_ids)) == len(device_ids), f"two workers share a GPU: {device_ids}"


def test_models_volume_is_filled_by_a_one_shot_and_mounted_read_only() -> None:
    services = _services()
    models = services["models"]
    assert models["command"] == ["cmet-models-init"]
    assert ("models", "/models", "rw") in _named_mounts(models)
    assert "models-init.sh" in DOCKERFILES["worker"].read_text()
    for name in ["api", *_workers(services)]:
        assert ("models", "/models", "ro") in _named_mounts(services[name]), f"{name} mounts the models read-only"
        assert _environment(services[name])["CMET_MODELS_DIR"] == "/models"


def test_redis_keeps_an_append_only_file_on_a_volume() -> None:
    redis = _services()["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert ("redis-data", "/data", "rw") in _named_mounts(redis)
    assert "--requirepass" in command
    assert "REDIS_PASSWORD" in _services()["api"]["environment"]["CMET_BROKER_URL"]


def test_postgres_16_on_a_volume_and_minio_with_its_bucket() -> None:
    services = _services()
    env = _example_env_with_secrets()
    assert _interpolate(services["postgres"]["image"], env).startswith("postgres:16")
    assert ("postgres-data", "/var/lib/postgresql/data", "rw") in _named_mounts(services["postgres"])
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert ("minio-data", "/data", "rw") in _named_mounts(services["minio"])
    init = services["minio-init"]
    assert _interpolate(init["image"], env).startswith("minio/mc:")
    assert init["depends_on"]["minio"]["condition"] == "service_healthy"
    assert ("./deploy/minio-init.sh", "/cmet/minio-init.sh", "ro") in _named_mounts(init)


def _secrets_only() -> dict[str, str]:
    """No .env at all but the secrets: what the compose file's own defaults give."""
    return {name: "x" * 12 for name in SECRETS}


@pytest.mark.parametrize("env_source", ["example", "defaults"])
def test_no_latest_or_untagged_images(env_source: str) -> None:
    env = _example_env_with_secrets() if env_source == "example" else _secrets_only()
    for name, svc in _services().items():
        image = _interpolate(svc["image"], env)
        repo, _, tag = image.rpartition(":")
        assert repo and "/" not in tag, f"{name}: image {image!r} has no tag"
        assert tag and tag != "latest", f"{name}: image {image!r}"
    for kind in DOCKERFILES:
        lines, args = _dockerfile(kind)
        for line in lines:
            if line.startswith("FROM "):
                image = line.split()[1]
                image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
                assert ":" in image and not image.endswith(":latest"), f"{kind}: FROM {image}"
        for name, value in args.items():
            if name.endswith("_IMAGE"):
                assert ":" in value and not value.endswith(":latest"), f"{kind}: ARG {name}={value}"


def test_volumes_are_declared_and_bind_mounts_exist() -> None:
    compose = _compose()
    declared = set(compose.get("volumes") or {})
    used = set()
    for name, svc in compose["services"].items():
        for source, _target, _mode in _named_mounts(svc):
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                used.add(source)
    assert used == declared, f"used but not declared: {used - declared}; declared but unused: {declared - used}"


# --- .env.example -----------------------------------------------------------------------------------


def test_env_example_documents_every_variable_with_the_compose_default() -> None:
    variables = _variables()
    example = _env_example()
    missing = set(variables) - set(example)
    assert not missing, f"variables of docker-compose.yml not in .env.example: {sorted(missing)}"
    unused = set(example) - set(variables) - {"COMPOSE_PROFILES"}
    assert not unused, f".env.example keys docker-compose.yml never reads: {sorted(unused)}"
    for name, uses in variables.items():
        ops = {op for op, _ in uses}
        if name in SECRETS:
            assert ops == {":?"}, f"secret {name} must be required everywhere (${{{name}:?...}}), not {ops}"
            assert example[name] == "", f"secret {name} must have no value in .env.example"
        else:
            assert ops == {":-"}, f"{name} needs a default (${{{name}:-...}}), has {ops}"
            defaults = {arg for _, arg in uses}
            assert defaults == {example[name]}, f"{name}: compose default(s) {defaults} vs .env.example {example[name]!r}"
    # every secret is required somewhere and documented with a comment line above it
    text = ENV_EXAMPLE.read_text().splitlines()
    for name in SECRETS:
        index = next(i for i, line in enumerate(text) if line.startswith(f"{name}="))
        assert text[index - 1].startswith("#"), f"{name} needs a comment"


def test_service_environment_is_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CMET_* variables compose gives the API and the workers are fields of ServiceSettings and parse."""
    from service.settings import ServiceSettings

    env = _example_env_with_secrets()
    fields = set(ServiceSettings.model_fields)
    services = _services()
    for name in ["api", "migrate", *_workers(services)]:
        rendered = {k: _interpolate(v, env) for k, v in _environment(services[name]).items()}
        unknown = {k for k in rendered if k.startswith("CMET_") and k[5:].lower() not in fields}
        assert not unknown, f"{name}: {sorted(unknown)} are no settings"
        with monkeypatch.context() as patch:
            for key in [k for k in os.environ if k.startswith("CMET_")]:
                patch.delenv(key)
            for key, value in rendered.items():
                patch.setenv(key, value)
            settings = ServiceSettings()  # parsed from the environment, as in the containers
        assert settings.storage == "s3" and str(settings.data_dir) == "/var/lib/cmet"
        assert settings.db_url.startswith("postgresql+psycopg://") and "@postgres:5432/" in settings.db_url
        assert settings.broker_url.startswith("redis://:") and settings.broker_url.endswith("@redis:6379/0")
        assert settings.models_set == Path("/models") and settings.resolved_models_dir == Path("/models")
        assert settings.worker_metrics_port == 9808


# --- Prometheus and Grafana -----------------------------------------------------------------------------


def test_prometheus_scrapes_the_api_and_every_worker() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    services = _services()
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    static = {t: job for job in jobs.values() for sc in job.get("static_configs", []) for t in sc["targets"]}
    dns = {(name, sd["port"]): job for job in jobs.values() for sd in job.get("dns_sd_configs", []) for name in sd["names"]}
    assert "api:8000" in static and static["api:8000"].get("metrics_path", "/metrics") == "/metrics"
    for name, svc in _workers(services).items():
        port = int(_environment(svc)["CMET_WORKER_METRICS_PORT"])
        aliases = set(svc["networks"]["default"]["aliases"])
        assert f"{name}:{port}" in static or any((alias, port) in dns for alias in aliases), f"prometheus does not scrape {name}"
    assert ("./deploy/prometheus.yml", "/etc/prometheus/prometheus.yml", "ro") in _named_mounts(services["prometheus"])


def test_dashboard_uses_only_metrics_the_code_defines() -> None:
    metrics = _code_metrics()
    assert DASHBOARD_METRICS <= set(metrics), f"the code no longer defines {DASHBOARD_METRICS - set(metrics)}"
    assert all(name.startswith("cmet_") for name in metrics)
    exposed = _exposed_names(metrics)
    datasource_uids = {ds["uid"] for f in DATASOURCES.glob("*.yml") for ds in yaml.safe_load(f.read_text())["datasources"]}
    files = sorted(DASHBOARDS.glob("*.json"))
    assert files, "no dashboard in deploy/grafana/dashboards"
    plotted = set()
    for path in files:
        dashboard = json.loads(path.read_text())
        assert dashboard["uid"] and dashboard["panels"]
        for panel in dashboard["panels"]:
            assert panel["datasource"]["uid"] in datasource_uids, f"{panel['title']}: unknown datasource"
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                names, grouping = _promql_metrics(target["expr"])
                assert names, f"{panel['title']}: no metric in {target['expr']!r}"
                for name in names:
                    assert name.startswith("cmet_"), f"{panel['title']}: {name} lacks the cmet_ prefix"
                    assert name in exposed, f"{panel['title']}: {name} is no metric of service/ or worker/"
                    plotted.add(exposed[name])
                labels = set().union(*(metrics[exposed[n]][1] for n in names)) | {"le", "instance", "job"}
                assert grouping <= labels, f"{panel['title']}: groups by unknown label(s) {grouping - labels}"
    assert DASHBOARD_METRICS <= plotted, f"no panel plots {DASHBOARD_METRICS - plotted}"


def test_promql_parser_of_the_dashboard_check() -> None:
    names, grouping = _promql_metrics(
        'histogram_quantile(0.95, sum by (le, stage) (rate(cmet_stage_duration_seconds_bucket{job="x"}[$__rate_interval])))'
        " / on (stage) sum(up) * 2"
    )
    assert names == {"cmet_stage_duration_seconds_bucket", "up"} and grouping == {"le", "stage"}


# --- Dockerfiles --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_dockerfile_runs_as_a_non_root_user_with_a_healthcheck(kind: str) -> None:
    lines, _ = _dockerfile(kind)
    last_from = max(i for i, line in enumerate(lines) if line.startswith("FROM "))
    users = [line.split()[1] for line in lines[last_from:] if line.startswith("USER ")]
    assert users, f"{kind}: no USER in the final stage"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"{kind} runs as {user}"
    assert any(line.startswith("HEALTHCHECK ") and " CMD " in f" {line} " for line in lines[last_from:]), f"{kind}: no HEALTHCHECK"
    assert any(line.startswith(("CMD ", "ENTRYPOINT ")) for line in lines[last_from:])


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_dockerfile_installs_the_project_as_pyproject_says(kind: str) -> None:
    lines, args = _dockerfile(kind)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    torch_pin = next(r for r in pyproject["project"]["dependencies"] if r.startswith("torch"))
    assert torch_pin == f"torch=={args['TORCH_VERSION']}", f"{kind}: TORCH_VERSION {args['TORCH_VERSION']} vs pyproject {torch_pin}"
    # every package of the project is copied into the image, and every COPY source exists
    copied = set()
    for line in lines:
        if line.startswith("COPY ") and "--from=" not in line:
            sources = [p for p in line.split()[1:-1] if not p.startswith("--")]
            for source in sources:
                assert (ROOT / source).exists(), f"{kind}: COPY {source} does not exist"
                copied.add(source.rstrip("/"))
    packages = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages <= copied, f"{kind}: packages not copied: {packages - copied}"
    assert {"pyproject.toml", pyproject["project"]["readme"]} <= copied
    # the extras exist, and they bring what the process imports
    requirements = _requirements_module().requirements
    extras = args["CMET_EXTRAS"].split()
    names = {re.split(r"[\[<>=!~ ;]", r, maxsplit=1)[0].lower() for r in requirements(ROOT / "pyproject.toml", extras)}
    needed = {"api": {"fastapi", "uvicorn", "prometheus-client", "psycopg", "celery", "boto3"}, "worker": {"funasr", "celery", "prometheus-client", "psycopg", "boto3"}}[kind]
    assert needed <= names, f"{kind}: extras {extras} lack {needed - names}"


def test_api_image_is_slim_and_worker_image_is_cuda() -> None:
    api_lines, api_args = _dockerfile("api")
    worker_lines, worker_args = _dockerfile("worker")
    assert api_args["PYTHON_IMAGE"].startswith("python:3.11-slim")
    assert api_args["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    assert any("--index-url" in line and "torch==" in line for line in api_lines)
    assert worker_args["CUDA_IMAGE"].startswith("nvidia/cuda:")
    assert "3.11" in " ".join(worker_lines)
    for kind, lines in (("api", api_lines), ("worker", worker_lines)):
        assert any(re.search(r"useradd .*--uid 10001", line) for line in lines), f"{kind}: the shared uid 10001"
        # the build context (the repository root) is filtered by <Dockerfile>.dockerignore: all out
        # (.git, .venv, models), then back in exactly what the Dockerfile copies
        ignore = DOCKERFILES[kind].with_name(DOCKERFILES[kind].name + ".dockerignore")
        patterns = [p.strip() for p in ignore.read_text().splitlines() if p.strip() and not p.startswith("#")]
        assert patterns[0] == "*", f"{ignore.name} starts by leaving everything out"
        allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
        sources = {s.rstrip("/") for line in lines if line.startswith("COPY ") and "--from=" not in line for s in line.split()[1:-1] if not s.startswith("--")}
        assert sources == allowed, f"{ignore.name}: re-included {sorted(allowed)} vs copied {sorted(sources)}"


def test_requirements_script(tmp_path: Path) -> None:
    requirements = _requirements_module().requirements
    reqs = requirements(ROOT / "pyproject.toml", ["service", "worker"])
    assert reqs[0].startswith("torch==") and len(reqs) == len(set(reqs))
    with pytest.raises(SystemExit, match="unknown extra"):
        requirements(ROOT / "pyproject.toml", ["nope"])


# --- init scripts against stubs -------------------------------------------------------------------------

_MC_STUB = """echo "$*" >> "$STUB_LOG"
case "$1 $2 $3" in
  "admin policy create") cp "$6" "$STUB_POLICY" ;;
  "admin policy attach") [ -z "${ATTACH_FAILS:-}" ] || { echo "policy already attached" >&2; exit 1; } ;;
  "admin user info") echo "AccessKey: $4"; echo "PolicyName: ${USER_POLICY:-}" ;;
esac
exit 0
"""

_MINIO_ENV = {
    "MINIO_ROOT_USER": "root", "MINIO_ROOT_PASSWORD": "root-secret", "CMET_S3_BUCKET": "my-bucket",
    "CMET_S3_ACCESS_KEY_ID": "cmet-service", "CMET_S3_SECRET_ACCESS_KEY": "service-secret",
}


def test_minio_init_creates_the_bucket_and_a_bucket_scoped_user(tmp_path: Path) -> None:
    log, policy = tmp_path / "mc.log", tmp_path / "policy.json"
    done = _run_stubbed(DEPLOY / "minio-init.sh", {"mc": _MC_STUB}, {**_MINIO_ENV, "STUB_LOG": str(log), "STUB_POLICY": str(policy)}, tmp_path)
    assert done.returncode == 0, done.stderr
    calls = log.read_text().splitlines()
    assert calls[0] == "alias set cmet http://minio:9000 root root-secret"
    assert "mb --ignore-existing cmet/my-bucket" in calls
    assert "admin user add cmet cmet-service service-secret" in calls
    assert "admin policy attach cmet cmet-bucket-rw --user cmet-service" in calls
    statements = json.loads(policy.read_text())["Statement"]
    resources = {r for s in statements for r in s["Resource"]}
    assert resources == {"arn:aws:s3:::my-bucket", "arn:aws:s3:::my-bucket/*"}
    assert {"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"} <= {a for s in statements for a in s["Action"]}


def test_minio_init_is_idempotent_and_fails_loudly(tmp_path: Path) -> None:
    env = {**_MINIO_ENV, "STUB_LOG": str(tmp_path / "mc.log"), "STUB_POLICY": str(tmp_path / "p.json"), "ATTACH_FAILS": "1"}
    again = _run_stubbed(DEPLOY / "minio-init.sh", {"mc": _MC_STUB}, {**env, "USER_POLICY": "cmet-bucket-rw"}, tmp_path)
    assert again.returncode == 0, again.stderr  # a re-run: the policy is attached already
    broken = _run_stubbed(DEPLOY / "minio-init.sh", {"mc": _MC_STUB}, env, tmp_path)
    assert broken.returncode == 1 and "could not attach" in broken.stderr
    missing = _run_stubbed(DEPLOY / "minio-init.sh", {"mc": _MC_STUB}, {k: v for k, v in env.items() if k != "CMET_S3_SECRET_ACCESS_KEY"}, tmp_path)
    assert missing.returncode != 0


_CMET_STUB = """echo "$*" >> "$STUB_LOG"
[ "$1 $2" = "models verify" ] && exit "${VERIFY_RC:-0}"
exit 0
"""


@pytest.mark.parametrize(
    ("verify_rc", "source", "rc", "expected"),
    [
        ("0", "official", 0, None),
        ("1", "official", 0, "models pull --dir /models --force"),
        ("1", "tiny", 0, "models make-tiny /models/tiny --force"),
        ("1", "bogus", 2, None),
    ],
)
def test_models_init_keeps_a_verified_set_else_writes_one(tmp_path: Path, verify_rc: str, source: str, rc: int, expected: str | None) -> None:
    log = tmp_path / "cmet.log"
    env = {"STUB_LOG": str(log), "VERIFY_RC": verify_rc, "CMET_MODELS_SOURCE": source, "CMET_MODELS_DIR": "/models"}
    done = _run_stubbed(DEPLOY / "models-init.sh", {"cmet": _CMET_STUB}, env, tmp_path)
    assert done.returncode == rc, done.stderr
    calls = log.read_text().splitlines() if log.exists() else []
    if source == "bogus":
        assert calls == []
        return
    assert calls[0] == "models verify --no-load --dir /models"
    assert calls[1:] == ([expected] if expected else [])


# --- the tools, where installed ---------------------------------------------------------------------


def _compose_config(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose not installed (Debian package docker-compose); the offline config check is skipped")
    env_file = tmp_path / "compose.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    command = [binary, "-f", str(COMPOSE), "--project-directory", str(ROOT), "--env-file", str(env_file), *args]
    return subprocess.run(command, cwd=ROOT, env=_sanitized_env(), capture_output=True, text=True, timeout=120)


def test_docker_compose_config_validates_with_the_example_env(tmp_path: Path) -> None:
    done = _compose_config(tmp_path, _example_env_with_secrets(), "config", "-q")
    assert done.returncode == 0, done.stderr


def test_docker_compose_refuses_the_example_env_until_secrets_are_set(tmp_path: Path) -> None:
    done = _compose_config(tmp_path, _env_example(), "config", "-q")
    assert done.returncode != 0
    assert any(f"set {name} in .env" in done.stderr for name in SECRETS), done.stderr


def test_docker_compose_renders_the_gpu_and_monitoring_profiles(tmp_path: Path) -> None:
    env = {**_example_env_with_secrets(), "CMET_GPU1": "3"}
    done = _compose_config(tmp_path, env, "--profile", "gpu2", "--profile", "monitoring", "config")
    assert done.returncode == 0, done.stderr
    rendered = yaml.safe_load(done.stdout)["services"]
    assert {"worker-gpu0", "worker-gpu1", "grafana"} <= set(rendered)
    assert rendered["worker-gpu1"]["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"] == ["3"]
    assert rendered["worker-gpu1"]["environment"]["CUDA_VISIBLE_DEVICES"] == "0"
    assert "@%h" in " ".join(rendered["worker-gpu0"]["command"])


def test_promtool_checks_the_prometheus_config() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus); the config check is skipped")
    done = subprocess.run([promtool, "check", "config", str(PROMETHEUS)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
