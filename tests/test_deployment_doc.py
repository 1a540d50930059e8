"""docs/deployment.md's examples are real: the Kubernetes manifests parse, and their config is
one `gtom check-config` accepts; the systemd unit runs the command that exists."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

DOC = (Path(__file__).parent.parent / "docs" / "deployment.md").read_text()


def block(language: str) -> str:
    found = re.search(rf"```{language}\n(.*?)```", DOC, flags=re.S)
    assert found is not None, f"no {language} block"
    return found.group(1)


def test_the_kubernetes_deployment_has_two_replicas_and_a_config_check_config_accepts(
    tmp_path: Path,
) -> None:
    documents: list[dict[str, Any]] = list(yaml.safe_load_all(block("yaml")))
    kinds = {d["kind"]: d for d in documents}
    assert kinds["Deployment"]["spec"]["replicas"] == 2
    container = kinds["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    config = tmp_path / "gtom.toml"
    config.write_text(kinds["ConfigMap"]["data"]["gtom.toml"])
    assert "/etc/gtom/gtom.toml" in " ".join(container["command"])
    done = subprocess.run(
        [sys.executable, "-m", "gtom", "check-config", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        env={"GTOM_SOURCE_URI": "mongodb://db-0.db/?replicaSet=rs0", "PATH": ""},
    )
    assert done.returncode == 0, done.stderr
    assert "checkpoint in mongodb" in done.stdout


def test_the_toml_example_and_the_systemd_unit_name_real_settings(tmp_path: Path) -> None:
    config = tmp_path / "gtom.toml"
    config.write_text('[source]\nuri = "mongodb://db1/?replicaSet=rs0"\n' + block("toml"))
    done = subprocess.run(
        [sys.executable, "-m", "gtom", "check-config", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    unit = block("ini")
    assert "ExecStart=/opt/gtom/bin/gtom run --config /etc/gtom/gtom.toml" in unit
    assert "Restart=always" in unit
