"""Run by checkov's own interpreter (its venv, see test_helm.py): scan a folder of rendered manifests with
checkov's Kubernetes runner only (the CLI loads every framework's runner, seconds more) and print the findings
as JSON: failed and waived checks with the reason the chart gives."""

from __future__ import annotations

import json
import sys

from checkov.kubernetes.runner import Runner
from checkov.runner_filter import RunnerFilter


def main(folder: str) -> None:
    report = Runner().run(root_folder=folder, runner_filter=RunnerFilter(framework=["kubernetes"]))
    print(
        json.dumps(
            {
                "passed": len(report.passed_checks),
                "failed": [f"{c.check_id} {c.resource} {c.file_path}" for c in report.failed_checks],
                "skipped": [
                    {
                        "check": c.check_id,
                        "resource": c.resource,
                        "reason": (c.check_result or {}).get("suppress_comment", ""),
                    }
                    for c in report.skipped_checks
                ],
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
