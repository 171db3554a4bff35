"""Writes `cmet_client/models.py` from the server's contract, `openapi.yaml` at the repository's root,
with datamodel-code-generator (the version pinned in the server's `dev` extra), then ruff's format.

    python clients/python/generate_models.py           # rewrite the file
    python clients/python/generate_models.py --check   # exit 1 if it differs (the drift test does this)
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CONTRACT = ROOT / "openapi.yaml"
TARGET = HERE / "cmet_client" / "models.py"
OPTIONS = (
    "--input-file-type=openapi",
    "--output-model-type=pydantic_v2.BaseModel",
    "--target-python-version=3.10",
    "--use-standard-collections",
    "--use-union-operator",
    "--use-annotated",
    "--field-constraints",
    "--collapse-root-models",
    "--enum-field-as-literal=all",
    "--disable-timestamp",
    "--formatters=ruff-format",
)


def render() -> str:
    """The models as the generator writes them today, formatted as the repository formats code."""
    tools = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as scratch:
        raw = Path(scratch) / "models.py"
        subprocess.run(
            [str(tools / "datamodel-codegen"), f"--input={CONTRACT}", f"--output={raw}", *OPTIONS],
            check=True,
            capture_output=True,
            cwd=ROOT,
        )
        text = raw.read_text().replace(f"#   filename:  {raw.name}", "#   filename:  openapi.yaml")
    header = '"""The API\'s models, made from openapi.yaml by clients/python/generate_models.py: do not edit."""\n\n'
    return ruffed(header + text, TARGET)


def ruffed(text: str, target: Path, rules: str = "I") -> str:
    """`text` as ruff leaves it for `target`: its import fixes (`rules`), then its format."""
    tools = Path(sys.executable).parent
    for step in (("check", f"--select={rules}", "--fix", "--quiet"), ("format",)):
        text = subprocess.run(
            [str(tools / "ruff"), *step, "--stdin-filename", str(target), "-"],
            input=text,
            check=True,
            capture_output=True,
            text=True,
            cwd=ROOT,
        ).stdout
    return text


def write_or_check(fresh: str, target: Path) -> None:
    """Write `target`; with `--check`, only exit 1 when it differs from `fresh`."""
    if "--check" in sys.argv[1:]:
        sys.exit(0 if target.exists() and target.read_text() == fresh else 1)
    target.write_text(fresh)


if __name__ == "__main__":
    write_or_check(render(), TARGET)
