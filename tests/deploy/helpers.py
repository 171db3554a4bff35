"""Shared readers of the deployment files for the deploy tests (compose, .env.example, deploy/)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent.parent
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DEPLOY = ROOT / "deploy"
PROMETHEUS = DEPLOY / "prometheus.yml"
METRICS_TOKEN_FILE = "/run/cmet/metrics-token"  # written by the prometheus service's entrypoint
DASHBOARDS = DEPLOY / "grafana" / "dashboards"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources"
DOCKERFILES = {"api": DEPLOY / "Dockerfile.api", "worker": DEPLOY / "Dockerfile.worker"}

SECRETS = {
    "POSTGRES_PASSWORD",
    "REDIS_PASSWORD",
    "MINIO_ROOT_PASSWORD",
    "CMET_S3_SECRET_ACCESS_KEY",
    "GRAFANA_ADMIN_PASSWORD",
    "CMET_METRICS_TOKEN",
}
REQUIRED_SERVICES = {
    "api",
    "migrate",
    "models",
    "worker-gpu0",
    "worker-gpu1",
    "webhooks",
    "redis",
    "postgres",
    "minio",
    "minio-init",
    "prometheus",
    "grafana",
}
# the panels the dashboard must have, by the metric each one plots
DASHBOARD_METRICS = {
    "cmet_jobs_total",
    "cmet_queue_wait_seconds",
    "cmet_stage_duration_seconds",
    "cmet_frames_processed_total",
    "cmet_gpu_memory_bytes",
    "cmet_webhook_deliveries_total",
    "cmet_http_requests_total",
    "cmet_http_request_duration_seconds",
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
    # GaugeMetricFamily: gauges a collector reads at scrape time (job states, queue depth)
    pattern = re.compile(
        r"\b(Counter|Histogram|Gauge|Summary|GaugeMetricFamily)\(\s*\"(\w+)\"\s*,\s*\"[^\"]*\"\s*(?:,\s*(?:labels=)?\[([^\]]*)\])?"
    )
    found = {}
    for path in (ROOT / "service" / "metrics.py", ROOT / "worker" / "metrics.py"):
        for kind, name, labels in pattern.findall(path.read_text()):
            found[name] = (kind, set(re.findall(r"\"(\w+)\"", labels or "")))
    return found


_PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
}


def _promql_metrics(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, grouping label names) of a PromQL expression (enough for the dashboard's)."""
    grouping = {
        label.strip()
        for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr)
        for label in group.split(",")
        if label.strip()
    }
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


def _run_stubbed(
    script: Path, stubs: dict[str, str], env: dict[str, str], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, body in stubs.items():
        stub = bin_dir / name
        stub.write_text("#!/bin/sh\n" + body)
        stub.chmod(0o755)
    full_env = _sanitized_env(PATH=f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}", TMPDIR=str(tmp_path), **env)
    return subprocess.run(["sh", str(script)], env=full_env, capture_output=True, text=True, timeout=60)
