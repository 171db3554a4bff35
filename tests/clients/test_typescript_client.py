"""The TypeScript client (`clients/typescript`): Node's own test runner against the real `cmet serve`,
and its types against the contract (openapi-typescript) and its code against them (tsc)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.clients.conftest import Served

PACKAGE = Path(__file__).resolve().parents[2] / "clients" / "typescript"
NODE = shutil.which("node")
BIN = PACKAGE / "node_modules" / ".bin"


def _node_major() -> int:
    if NODE is None:
        return 0
    version = subprocess.run([NODE, "--version"], capture_output=True, text=True).stdout
    return int(version.lstrip("v").split(".")[0])


needs_node = pytest.mark.skipif(_node_major() < 20, reason="Node.js 20 or newer runs the TypeScript client's tests")
needs_packages = pytest.mark.skipif(
    not (BIN / "openapi-typescript").exists() or not (BIN / "tsc").exists(),
    reason="the client's dev packages are not installed (cd clients/typescript && npm ci)",
)


@needs_node
def test_node_round_trip_against_cmet_serve(served: Served) -> None:
    env = served.env | {
        "CMET_SERVER": served.url,
        "CMET_API_KEY": served.key,
        "CMET_WEBHOOK_SECRET": served.webhook_secret,
        "CMET_TEST_CLIP": str(served.clip),
    }
    assert NODE is not None
    done = subprocess.run([NODE, "--test", "test/"], cwd=PACKAGE, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:] + served.log.read_text()[-2000:]
    assert "# pass 3" in done.stdout and "# skipped 0" in done.stdout, done.stdout[-2000:]


@needs_node
@needs_packages
def test_the_types_are_generated_from_the_contract_and_the_code_checks(tmp_path: Path) -> None:
    fresh = tmp_path / "schema.d.ts"
    made = subprocess.run(
        [str(BIN / "openapi-typescript"), "../../openapi.yaml", "--output", str(fresh)],
        cwd=PACKAGE,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    assert fresh.read_text() == (PACKAGE / "src" / "schema.d.ts").read_text(), "run `npm run generate` there"
    checked = subprocess.run(
        [str(BIN / "tsc"), "--noEmit", "-p", "."], cwd=PACKAGE, capture_output=True, text=True, timeout=180
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
