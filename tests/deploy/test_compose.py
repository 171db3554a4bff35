"""docker-compose.yml and .env.example, checked offline; `docker-compose config -q` where installed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.helpers import (
    COMPOSE,
    DOCKERFILES,
    ENV_EXAMPLE,
    METRICS_TOKEN_FILE,
    PROMETHEUS,
    REQUIRED_SERVICES,
    ROOT,
    SECRETS,
    _compose,
    _dockerfile,
    _env_example,
    _environment,
    _example_env_with_secrets,
    _interpolate,
    _named_mounts,
    _one_shots,
    _sanitized_env,
    _services,
    _variables,
    _workers,
)

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
                assert condition == "service_completed_successfully" and dep in one_shots, (
                    f"{name} -> {dep}: {condition}"
                )
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
        preview_queue, edit_queue = command[command.index("-Q") + 1].split(",")
        assert edit_queue == "${CMET_QUEUE:-cmet-edits}" == worker_env["CMET_QUEUE"], name
        assert preview_queue == "${CMET_PREVIEW_QUEUE:-cmet-previews}" == worker_env["CMET_PREVIEW_QUEUE"], name
        # concurrent jobs as threads of one process, so the dynamic batcher sees all their frames
        assert (
            command[command.index("--pool") + 1] == "threads"
            and int(_interpolate(command[command.index("-c") + 1], env)) >= 2
        ), name
        assert "ping" in " ".join(svc["healthcheck"]["test"]), name
        assert svc["build"]["dockerfile"] == "deploy/Dockerfile.worker", name
        assert svc.get("hostname") == name, f"{name}: a stable celery node name"
    assert len(set(device_ids)) == len(device_ids), f"two workers share a GPU: {device_ids}"


def test_webhooks_have_their_own_worker_without_models_or_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Deliveries run apart from the edits: the worker image with `cmet worker --webhooks`, its queue
    the one the API and the edit workers send deliveries to, and not the edit queue."""
    from cmet_jobs.settings import JobsSettings

    services = _services()
    hooks = services["webhooks"]
    assert hooks["command"] == ["cmet", "worker", "--webhooks"]
    assert hooks["image"] == _workers(services)["worker-gpu0"]["image"]
    assert "deploy" not in hooks and "models" not in hooks["depends_on"], "no GPU, no models"
    assert {"postgres", "redis", "migrate"} <= set(hooks["depends_on"])
    assert "cmet-webhooks@$$HOSTNAME" in " ".join(hooks["healthcheck"]["test"]) and hooks["hostname"] == "webhooks"
    assert "cmet-worker" in hooks["networks"]["default"]["aliases"], "prometheus scrapes its delivery counter"
    env = _example_env_with_secrets()
    rendered = {k: _interpolate(v, env) for k, v in _environment(hooks).items()}
    with monkeypatch.context() as patch:
        for key in [k for k in os.environ if k.startswith("CMET_")]:
            patch.delenv(key)
        for key, value in rendered.items():
            patch.setenv(key, value)
        settings = JobsSettings()
    assert settings.webhook_queue == "cmet-webhooks" != settings.queue
    assert settings.webhook_timeout_s == 10 and settings.webhook_concurrency == 8
    for name in ["api", *_workers(services)]:
        assert _environment(services[name])["CMET_WEBHOOK_QUEUE"] == _environment(hooks)["CMET_WEBHOOK_QUEUE"]


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
                image = re.sub(r"\$\{(\w+)\}", lambda m, args=args: args[m.group(1)], image)
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
            assert defaults == {example[name]}, (
                f"{name}: compose default(s) {defaults} vs .env.example {example[name]!r}"
            )
    # every secret is required somewhere and documented with a comment line above it
    text = ENV_EXAMPLE.read_text().splitlines()
    for name in SECRETS:
        index = next(i for i, line in enumerate(text) if line.startswith(f"{name}="))
        assert text[index - 1].startswith("#"), f"{name} needs a comment"


def test_service_environment_is_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CMET_* variables compose gives the API and the workers are fields of JobsSettings and parse."""
    from cmet_jobs.settings import JobsSettings

    env = _example_env_with_secrets()
    fields = set(JobsSettings.model_fields)
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
            settings = JobsSettings()  # parsed from the environment, as in the containers
        assert settings.storage == "s3" and str(settings.data_dir) == "/var/lib/cmet"
        assert settings.db_url.startswith("postgresql+psycopg://") and "@postgres:5432/" in settings.db_url
        assert settings.broker_url.startswith("redis://:") and settings.broker_url.endswith("@redis:6379/0")
        assert settings.models_set == Path("/models") and settings.resolved_models_dir == Path("/models")
        assert settings.worker_metrics_port == 9808


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


def test_promtool_checks_the_prometheus_config(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus); the config check is skipped")
    # the API's token file exists only inside the container (its entrypoint writes it): a stand-in here
    token = tmp_path / "metrics-token"
    token.write_text("test-token")
    text = PROMETHEUS.read_text()
    assert METRICS_TOKEN_FILE in text
    config = tmp_path / "prometheus.yml"
    config.write_text(text.replace(METRICS_TOKEN_FILE, str(token)))
    done = subprocess.run([promtool, "check", "config", str(config)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
