"""Run names: a training method plus optional sweep parameters, safe in paths and wildcards.

``run_name("ogl_dice", {"alpha": 0.25})`` -> ``"ogl_dice-alpha0.25"``. Method names use only
``[a-z0-9_]`` and never ``-``, so ``-`` separates the parameters; values are written in plain
positional notation (no exponent, so no ``-`` or ``+``); sweep values must be >= 0.
Readers of results take method and parameters from ``metrics.json`` (fields ``base_method``,
``params``), not from paths; ``parse_run_name`` exists for Snakemake input functions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

METHOD_PATTERN = r"[a-z0-9_]+"
PARAM_PATTERN = r"[a-z_]+[0-9.]+"
# Snakemake wildcard constraint for {method}: a base method and any number of -key<value>.
RUN_NAME_PATTERN = rf"{METHOD_PATTERN}(?:-{PARAM_PATTERN})*"


def format_value(value: float | int) -> str:
    if isinstance(value, bool) or not value >= 0:
        raise ValueError(f"sweep value {value!r}: run names take numbers >= 0")
    if isinstance(value, float):
        return np.format_float_positional(value, trim="-")
    return str(value)


def run_name(method: str, params: Mapping[str, float | int] | None = None) -> str:
    if not re.fullmatch(METHOD_PATTERN, method):
        raise ValueError(f"method name {method!r} must match {METHOD_PATTERN}")
    parts = [method]
    for key in sorted(params or {}):
        if not re.fullmatch(r"[a-z_]+", key):
            raise ValueError(f"sweep parameter name {key!r} must match [a-z_]+")
        parts.append(f"{key}{format_value(params[key])}")
    return "-".join(parts)


def parse_run_name(name: str) -> tuple[str, dict[str, float]]:
    """Inverse of ``run_name`` (values come back as floats)."""
    if not re.fullmatch(RUN_NAME_PATTERN, name):
        raise ValueError(f"run name {name!r} does not match {RUN_NAME_PATTERN}")
    method, *rest = name.split("-")
    params: dict[str, float] = {}
    for part in rest:
        match = re.fullmatch(r"([a-z_]+)([0-9.]+)", part)
        assert match is not None  # guaranteed by RUN_NAME_PATTERN
        params[match.group(1)] = float(match.group(2))
    return method, params
