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


def rejected(config: dict) -> str:
    with pytest.raises(ConfigError) as err:
        validate_config({"dataset": {"kind": "synthdive"}, **config})
    return str(err.value)


@pytest.mark.parametrize(
    ("explain", "key", "name"),
    [
        ({"rise": {"n_sampels": 50}}, "explain.rise", "n_sampels"),
        ({"lime": {"kernel_widht": 0.2}}, "explain.lime", "kernel_widht"),
        ({"loco": {"batch_sise": 4}}, "explain.loco", "batch_sise"),
        ({"occlusion": {"positions": [4, 5, 5], "windw": 2}}, "explain.occlusion", "windw"),
        ({"swag_v": {"segments": 9}}, "explain.swag_v", "segments"),
        ({"metrics": {"stesp": 10}}, "explain.metrics", "stesp"),
        ({"selective": {"nstd": 3}}, "explain.selective", "nstd"),
        ({"gradcm": {}}, "'explain'", "gradcm"),
        ({"kernel_shap": {"segmentation": {"n_segmnets": 9}}}, "kernel_shap.segmentation",
         "n_segmnets"),
    ],
)  # fmt: skip
def test_a_misspelt_explainer_option_is_rejected_by_name(explain, key, name) -> None:
    message = rejected({"explain": explain})
    assert key in message and name in message


def test_explainer_sections_accept_their_options_and_the_shared_ones() -> None:
    config = validate_config({
        "dataset": {"kind": "synthdive"},
        "explain": {"rise": {"n_samples": 64, "grid": [2, 3, 3], "p": 0.4, "batch_size": 8},
                    "loco": {"seed": 3, "segmentation": {"method": "grid", "grid": [2, 2, 2]}},
                    "metrics": {"steps": 10, "faithfulness": False}},
    })  # fmt: skip
    assert config["explain"]["rise"]["n_samples"] == 64


def test_method_options_for_a_method_that_does_not_exist_are_rejected_by_name() -> None:
    message = rejected({"train": {"method_options": {"ogl_dcie": {"alpha": 0.25}}}})
    assert "train.method_options" in message and "ogl_dcie" in message
    message = rejected({"train": {"method_options": {"vanilla": {"alpha": 0.25}}}})
    assert "train.method_options.vanilla" in message and "alpha" in message


def test_the_schema_lists_exactly_the_registered_methods_and_their_options() -> None:
    from flowguide.config import load_schema
    from flowguide.train.methods import METHODS

    listed = load_schema()["properties"]["train"]["properties"]["method_options"]["properties"]
    # The package's methods (test modules may register their own at import).
    ours = {name: cls for name, cls in METHODS.items() if cls.__module__.startswith("flowguide.")}
    assert set(listed) == set(ours)
    for name, cls in ours.items():
        assert set(listed[name].get("properties", {})) == set(cls.defaults), name


def test_a_sweep_of_an_option_the_method_lacks_is_found_when_the_config_loads() -> None:
    message = rejected(
        {"train": {"sweeps": [{"method": "rrr_ogl", "param": "lamda", "values": [0.1]}]}}
    )
    assert "train.sweeps.0.param" in message and "'lamda'" in message and "lambda" in message
    message = rejected({"train": {"sweeps": [{"method": "ogl", "param": "p", "values": [0.1]}]}})
    assert "train.sweeps.0.method" in message and "'ogl'" in message


@pytest.mark.parametrize(
    ("batch", "loader", "gpus", "device", "ok"),
    [
        (8, 4, 1, "auto", True),
        (6, 4, 1, "auto", False),  # 6 is no multiple of 4
        (8, 4, 2, "auto", True),  # 2 processes x 4 = 8
        (4, 4, 2, "auto", False),  # 2 processes x 4 = 8 does not divide 4
        (12, 4, 2, "cuda", False),
        (4, 4, 2, "cpu", True),  # on the CPU a job runs one process whatever gpus says
    ],
)
def test_the_batch_must_split_over_processes_and_loader_batches(
    batch: int, loader: int, gpus: int, device: str, ok: bool
) -> None:
    config = {
        "device": device,
        "train": {"batch_size": batch, "loader_batch_size": loader},
        "cluster": {"rules": {"train": {"gpus": gpus}}},
    }
    if ok:
        validate_config({"dataset": {"kind": "synthdive"}, **config})
        return
    message = rejected(config)
    assert "train.batch_size" in message and f"train.loader_batch_size {loader}" in message
    assert ("cluster.rules.train.gpus" in message) == (gpus > 1)


@pytest.mark.parametrize("device", ["gpu", "cuda0", "cuda:", "CPU", "cuda:x"])
def test_an_invalid_device_is_found_when_the_config_loads(device: str) -> None:
    message = rejected({"device": device})
    assert "config key 'device'" in message and repr(device) in message


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:3"])
def test_valid_devices_load(device: str) -> None:
    assert validate_config({"dataset": {"kind": "synthdive"}, "device": device})["device"] == device
