"""`openapi.yaml` is the contract: it must equal the schema the app generates."""

from __future__ import annotations

from service.openapi import ROOT_FILE, render


def test_openapi_yaml_is_current() -> None:
    assert ROOT_FILE.read_text() == render(), "openapi.yaml is stale: run `python -m service.openapi`"


def test_the_api_never_imports_torch(tiny_set, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """ARCHITECTURE: the service process stays free of torch (and of the face detector), even when
    it reads the model set for GET /v1/models."""
    import subprocess
    import sys

    script = f"""
import sys
from fastapi.testclient import TestClient
from service.app import create_app
from cmet_jobs.db.session import session_scope
from cmet_jobs.keys import create_key
from cmet_jobs.settings import JobsSettings
settings = JobsSettings(data_dir={str(tmp_path)!r}, models_set={str(tiny_set)!r})
app = create_app(settings)
with session_scope(settings.db_url) as s:
    key = create_key(s, "t").secret
client = TestClient(app)
assert client.get("/v1/models", headers={{"Authorization": "Bearer " + key}}).status_code == 200
assert client.get("/v1/emotions", headers={{"Authorization": "Bearer " + key}}).status_code == 200
heavy = sorted(m for m in ("torch", "mediapipe", "cv2", "funasr") if m in sys.modules)
print(heavy)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_every_webhook_event_is_documented_with_its_headers_and_a_valid_example() -> None:
    import yaml

    from cmet_jobs.schemas import ALL_EVENTS, BatchEvent, EditEvent, PreviewEvent

    hooks = yaml.safe_load(ROOT_FILE.read_text())["webhooks"]
    assert sorted(hooks) == sorted([*ALL_EVENTS, "batch.completed"])
    for event, operations in hooks.items():
        post = operations["post"]
        headers = {p["name"] for p in post["parameters"] if p["in"] == "header"}
        assert headers == {"webhook-id", "webhook-timestamp", "webhook-signature"}, event
        body = post["requestBody"]["content"]["application/json"]
        models: dict[str, type[EditEvent] | type[PreviewEvent] | type[BatchEvent]]
        models = {"edit": EditEvent, "preview": PreviewEvent, "batch": BatchEvent}
        model = models[event.split(".")[0]]
        assert body["schema"]["$ref"].endswith(model.__name__)
        assert model.model_validate(body["example"]).type == event
        assert "CMET_WEBHOOK_TIMEOUT_S" in post["description"] and "whsec_" in post["description"]
