"""Prometheus and Grafana config, the Dockerfiles and the init scripts (run against stub commands)."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.deploy.helpers import (
    DASHBOARD_METRICS,
    DASHBOARDS,
    DATASOURCES,
    DEPLOY,
    DOCKERFILES,
    METRICS_TOKEN_FILE,
    PROMETHEUS,
    ROOT,
    _code_metrics,
    _dockerfile,
    _environment,
    _exposed_names,
    _named_mounts,
    _promql_metrics,
    _requirements_module,
    _run_stubbed,
    _services,
    _workers,
)

# --- Prometheus and Grafana -----------------------------------------------------------------------------


def test_prometheus_scrapes_the_api_and_every_worker() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    services = _services()
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    static = {t: job for job in jobs.values() for sc in job.get("static_configs", []) for t in sc["targets"]}
    dns = {
        (name, sd["port"]): job for job in jobs.values() for sd in job.get("dns_sd_configs", []) for name in sd["names"]
    }
    assert "api:8000" in static and static["api:8000"].get("metrics_path", "/metrics") == "/metrics"
    # the API's /metrics answers only its token: prometheus gets the same variable and writes the file it reads
    assert static["api:8000"]["authorization"] == {"type": "Bearer", "credentials_file": METRICS_TOKEN_FILE}
    prometheus = services["prometheus"]
    token = _environment(services["api"])["CMET_METRICS_TOKEN"]
    assert _environment(prometheus)["CMET_METRICS_TOKEN"] == token and token.startswith("${CMET_METRICS_TOKEN:?")
    assert METRICS_TOKEN_FILE in " ".join(prometheus["entrypoint"])
    assert str(Path(METRICS_TOKEN_FILE).parent) in prometheus["tmpfs"]
    for name, svc in _workers(services).items():
        port = int(_environment(svc)["CMET_WORKER_METRICS_PORT"])
        aliases = set(svc["networks"]["default"]["aliases"])
        assert f"{name}:{port}" in static or any((alias, port) in dns for alias in aliases), (
            f"prometheus does not scrape {name}"
        )
    assert ("./deploy/prometheus.yml", "/etc/prometheus/prometheus.yml", "ro") in _named_mounts(services["prometheus"])


def test_dashboard_uses_only_metrics_the_code_defines() -> None:
    metrics = _code_metrics()
    assert DASHBOARD_METRICS <= set(metrics), f"the code no longer defines {DASHBOARD_METRICS - set(metrics)}"
    assert all(name.startswith("cmet_") for name in metrics)
    exposed = _exposed_names(metrics)
    datasource_uids = {
        ds["uid"] for f in DATASOURCES.glob("*.yml") for ds in yaml.safe_load(f.read_text())["datasources"]
    }
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
        "histogram_quantile(0.95, sum by (le, stage) "
        '(rate(cmet_stage_duration_seconds_bucket{job="x"}[$__rate_interval])))'
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
    assert any(line.startswith("HEALTHCHECK ") and " CMD " in f" {line} " for line in lines[last_from:]), (
        f"{kind}: no HEALTHCHECK"
    )
    assert any(line.startswith(("CMD ", "ENTRYPOINT ")) for line in lines[last_from:])


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_dockerfile_installs_the_project_as_pyproject_says(kind: str) -> None:
    lines, args = _dockerfile(kind)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    if "TORCH_VERSION" in args:
        torch_pin = next(r for r in pyproject["project"]["optional-dependencies"]["models"] if r.startswith("torch"))
        assert torch_pin == f"torch=={args['TORCH_VERSION']}", (
            f"{kind}: TORCH_VERSION {args['TORCH_VERSION']} vs pyproject {torch_pin}"
        )
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
    needed = {
        "api": {"fastapi", "uvicorn", "prometheus-client", "psycopg", "celery", "boto3"},
        "worker": {"funasr", "celery", "prometheus-client", "psycopg", "boto3"},
    }[kind]
    assert needed <= names, f"{kind}: extras {extras} lack {needed - names}"


def test_api_image_is_slim_and_worker_image_is_cuda() -> None:
    api_lines, api_args = _dockerfile("api")
    worker_lines, worker_args = _dockerfile("worker")
    assert api_args["PYTHON_IMAGE"].startswith("python:3.11-slim")
    # the API image has no torch, the worker image no FastAPI (the extras say so, the build checks it)
    requirements = _requirements_module().requirements
    names = {
        kind: {
            re.split(r"[\[<>=!~ ;]", r, maxsplit=1)[0].lower() for r in requirements(ROOT / "pyproject.toml", extras)
        }
        for kind, extras in (("api", api_args["CMET_EXTRAS"].split()), ("worker", worker_args["CMET_EXTRAS"].split()))
    }
    assert not names["api"] & {"torch", "mediapipe", "funasr", "safetensors"}, names["api"]
    assert not names["worker"] & {"fastapi", "uvicorn", "python-multipart"}, names["worker"]
    assert "TORCH_VERSION" not in api_args and not any("torch==" in line for line in api_lines)
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
        sources = {
            s.rstrip("/")
            for line in lines
            if line.startswith("COPY ") and "--from=" not in line
            for s in line.split()[1:-1]
            if not s.startswith("--")
        }
        assert sources == allowed, f"{ignore.name}: re-included {sorted(allowed)} vs copied {sorted(sources)}"


def test_requirements_script() -> None:
    requirements = _requirements_module().requirements
    reqs = requirements(ROOT / "pyproject.toml", ["service", "worker"])
    assert len(reqs) == len(set(reqs)) and not any(r.startswith("cmet[") for r in reqs)  # own extras expanded
    assert "torch==2.13.0" in reqs and not any(
        r.startswith("torch") for r in requirements(ROOT / "pyproject.toml", ["service"])
    )
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
    "MINIO_ROOT_USER": "root",
    "MINIO_ROOT_PASSWORD": "root-secret",
    "CMET_S3_BUCKET": "my-bucket",
    "CMET_S3_ACCESS_KEY_ID": "cmet-service",
    "CMET_S3_SECRET_ACCESS_KEY": "service-secret",
}


def test_minio_init_creates_the_bucket_and_a_bucket_scoped_user(tmp_path: Path) -> None:
    log, policy = tmp_path / "mc.log", tmp_path / "policy.json"
    done = _run_stubbed(
        DEPLOY / "minio-init.sh",
        {"mc": _MC_STUB},
        {**_MINIO_ENV, "STUB_LOG": str(log), "STUB_POLICY": str(policy)},
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    calls = log.read_text().splitlines()
    assert calls[0] == "alias set cmet http://minio:9000 root root-secret"
    assert "mb --ignore-existing cmet/my-bucket" in calls
    assert "admin user add cmet cmet-service service-secret" in calls
    assert "admin policy attach cmet cmet-bucket-rw --user cmet-service" in calls
    statements = json.loads(policy.read_text())["Statement"]
    resources = {r for s in statements for r in s["Resource"]}
    assert resources == {"arn:aws:s3:::my-bucket", "arn:aws:s3:::my-bucket/*"}
    assert {"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"} <= {
        a for s in statements for a in s["Action"]
    }


def test_minio_init_is_idempotent_and_fails_loudly(tmp_path: Path) -> None:
    env = {
        **_MINIO_ENV,
        "STUB_LOG": str(tmp_path / "mc.log"),
        "STUB_POLICY": str(tmp_path / "p.json"),
        "ATTACH_FAILS": "1",
    }
    again = _run_stubbed(DEPLOY / "minio-init.sh", {"mc": _MC_STUB}, {**env, "USER_POLICY": "cmet-bucket-rw"}, tmp_path)
    assert again.returncode == 0, again.stderr  # a re-run: the policy is attached already
    broken = _run_stubbed(DEPLOY / "minio-init.sh", {"mc": _MC_STUB}, env, tmp_path)
    assert broken.returncode == 1 and "could not attach" in broken.stderr
    missing = _run_stubbed(
        DEPLOY / "minio-init.sh",
        {"mc": _MC_STUB},
        {k: v for k, v in env.items() if k != "CMET_S3_SECRET_ACCESS_KEY"},
        tmp_path,
    )
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
def test_models_init_keeps_a_verified_set_else_writes_one(
    tmp_path: Path, verify_rc: str, source: str, rc: int, expected: str | None
) -> None:
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
