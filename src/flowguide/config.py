"""Configuration: YAML (safe loader) validated against the package's JSON schema, defaults filled.

The Snakefile, the CLI and the tests all go through ``validate_config``.
"""

from __future__ import annotations

import copy
import os
from importlib import resources
from typing import Any

import jsonschema
import yaml

from flowguide.utils.failures import FlowguideError


class ConfigError(FlowguideError):
    """A config key that is unknown, missing or of the wrong type."""


def load_schema() -> dict[str, Any]:
    text = resources.files("flowguide").joinpath("schemas/config.schema.yaml").read_text()
    return yaml.safe_load(text)


def _filling_validator():
    """A Draft 2020-12 validator that inserts schema defaults while it validates."""
    base = jsonschema.Draft202012Validator
    validate_properties = base.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(base, {"properties": set_defaults})


def _key_path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "<top level>"


def validate_config(config: dict[str, Any]) -> dict[str, Any]:
    """Validate ``config`` in place (filling defaults) and return it; errors name the key."""
    validator = _filling_validator()(load_schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    lines = [f"config key '{_key_path(e)}': {e.message}" for e in errors]
    if not errors:  # relations between keys, which the schema cannot express
        lines = _relation_errors(config, validator.schema)
    if lines:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))
    return config


def train_processes(gpus: int, device: str) -> int:
    """Processes of one training job: one per GPU when it is given several (never on the CPU)."""
    return gpus if gpus > 1 and device != "cpu" else 1


def _relation_errors(config: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """What would otherwise stop a training job, after flow, segment and select had run."""
    lines = []
    train = config.get("train", {})
    gpus = config.get("cluster", {}).get("rules", {}).get("train", {}).get("gpus", 1)
    n = train_processes(gpus, config.get("device", "auto"))
    batch, loader = train["batch_size"], train["loader_batch_size"]
    if batch % (n * loader):
        what = f"{n} processes (cluster.rules.train.gpus) x " if n > 1 else ""
        lines.append(
            f"config key 'train.batch_size': {batch} must be a multiple of {what}"
            f"train.loader_batch_size {loader} (gradient accumulation over whole loader batches)"
        )
    method_schemas = schema["properties"]["train"]["properties"]["method_options"]["properties"]
    for i, sweep in enumerate(train.get("sweeps", [])):
        method, param = sweep["method"], sweep["param"]
        known = method_schemas.get(method, {}).get("properties", {})
        if method not in method_schemas:
            lines.append(
                f"config key 'train.sweeps.{i}.method': no training method {method!r}; "
                f"known: {', '.join(sorted(method_schemas))}"
            )
        elif param not in known:
            lines.append(
                f"config key 'train.sweeps.{i}.param': method {method} has no option {param!r}; "
                f"known: {', '.join(sorted(known)) or 'none'}"
            )
    return lines


def load_config(path: str | os.PathLike, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read a YAML config file, apply nested ``overrides``, validate."""
    with open(path) as fh:
        config = yaml.safe_load(fh) or {}
    if overrides:
        deep_update(config, overrides)
    try:
        return validate_config(config)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def deep_update(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_update(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base
