"""The daemon's documentation says what the code does: exit codes, and a config that validates."""

from __future__ import annotations

import re
from pathlib import Path

from gtom.daemon import exits
from gtom.daemon.config import SECTIONS, load

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()
DAEMON_DOC = (ROOT / "docs" / "daemon.md").read_text()


def exit_table(text: str) -> dict[int, str]:
    rows = re.findall(r"^\| (\d+) \| (.+?) \|$", text, flags=re.M)
    return {int(code): meaning for code, meaning in rows}


def test_every_exit_code_is_documented_in_the_readme_and_the_daemon_doc() -> None:
    assert exit_table(README) == exits.TABLE
    assert exit_table(DAEMON_DOC) == exits.TABLE


def test_the_documented_config_file_validates_and_names_every_setting(tmp_path: Path) -> None:
    example = re.search(r"```toml\n(\[source\].*?)```", DAEMON_DOC, flags=re.S)
    assert example is not None
    path = tmp_path / "gtom.toml"
    path.write_text(example.group(1))
    config = load(str(path), {}, {})
    assert config.sink.type == "webhook" and config.source.namespaces == ["shop", "crm.users"]
    for section, model in SECTIONS.items():
        for key in model.model_fields:
            assert re.search(rf"^{key} = ", example.group(1), flags=re.M), f"{section}.{key}"
