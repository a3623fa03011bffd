"""envs/*.yaml (for conda users) must pin exactly what pyproject.toml pins."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def pyproject_pins() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + project["optional-dependencies"]["test"]
    pins = {}
    for dep in deps:
        name, version = dep.split("==")
        pins[name.lower()] = version
    return pins


def env_pins(path: Path) -> dict[str, str]:
    env = yaml.safe_load(path.read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    pins = {}
    for line in pip:
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==(\S+)", line)
        assert match, f"{path.name}: unpinned or malformed dependency {line!r}"
        pins[match[1].lower()] = match[2]
    return pins


ENV_FILES = sorted((ROOT / "envs").glob("*.yaml"))


def test_every_dependency_is_pinned_once_in_pyproject() -> None:
    pins = pyproject_pins()
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"


@pytest.mark.parametrize("path", ENV_FILES, ids=[p.stem for p in ENV_FILES])
def test_env_file_agrees_with_pyproject(path: Path) -> None:
    pins = pyproject_pins()
    for name, version in env_pins(path).items():
        assert name in pins, f"{path.name}: {name} is not a dependency in pyproject.toml"
        assert version == pins[name], f"{path.name}: {name}=={version}, pyproject has {pins[name]}"


def test_every_rule_with_conda_env_points_to_an_existing_file() -> None:
    for smk in (ROOT / "workflow" / "rules").glob("*.smk"):
        for env in re.findall(r'conda:\s*\n\s*"([^"]+)"', smk.read_text()):
            assert (smk.parent / env).resolve().is_file(), f"{smk.name}: missing {env}"
