"""The config schema: defaults filled, unknown keys and wrong types rejected by name."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from flowguide.config import ConfigError, load_config, validate_config

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_config_is_valid_and_defaults_are_the_thesis_values() -> None:
    config = load_config(ROOT / "config.yaml")
    assert config["dataset"]["kind"] == "synthdive"
    defaults = validate_config({"dataset": {"kind": "diving48"}})
    assert defaults["segment"]["sam"]["gridside"] == 20
    assert defaults["segment"]["max_objects"] == 10
    assert defaults["flow"]["num_flow_updates"] == 20
    assert defaults["flow"]["gaps"] == [1]
    assert defaults["select"]["num_layers"] == 3


def test_misspelt_key_is_rejected_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"dataset": {"kind": "synthdive", "shard_sise": 4}}))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "shard_sise" in str(err.value) and "'dataset'" in str(err.value)
    assert str(path) in str(err.value)


def test_wrong_type_is_rejected_with_its_key() -> None:
    with pytest.raises(ConfigError) as err:
        validate_config({"dataset": {"kind": "synthdive"}, "flow": {"num_flow_updates": "many"}})
    assert "flow.num_flow_updates" in str(err.value)
    with pytest.raises(ConfigError) as err:
        validate_config({"dataset": {"kind": "youtube"}})
    assert "dataset.kind" in str(err.value)


def test_workflow_schema_is_the_package_schema() -> None:
    workflow_schema = ROOT / "workflow" / "schemas" / "config.schema.yaml"
    package_schema = ROOT / "src" / "flowguide" / "schemas" / "config.schema.yaml"
    assert workflow_schema.resolve() == package_schema.resolve()


def test_a_partial_rule_resource_keeps_that_rules_other_defaults() -> None:
    config = validate_config(
        {"dataset": {"kind": "synthdive"}, "cluster": {"rules": {"train": {"gpus": 2}}}}
    )
    train = config["cluster"]["rules"]["train"]
    assert train == {"gpus": 2, "mem_mb": 64000, "runtime": 2880, "cpus_per_task": 16}
    assert config["cluster"]["rules"]["select"]["gpus"] == 0
