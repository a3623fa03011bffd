"""Security: checkpoints load with weights_only=True, YAML loads safely, no shell commands built
from user strings, no pickle or eval.

A static scan (AST for Python, the shell strings of the Snakemake rules) and behaviour tests with
hostile files whose payload would leave a marker on disk if it ever ran.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from flowguide.config import load_config
from flowguide.utils.checkpoints import load_weights
from flowguide.utils.failures import FlowguideError

ROOT = Path(__file__).resolve().parents[1]
PYTHON_SOURCES = sorted((ROOT / "src").rglob("*.py")) + sorted((ROOT / "benchmarks").rglob("*.py"))
WORKFLOW_FILES = [ROOT / "Snakefile", *sorted((ROOT / "workflow").rglob("*.smk"))]

FORBIDDEN_MODULES = {"pickle", "cPickle", "marshal", "shelve", "dill", "cloudpickle", "joblib"}
FORBIDDEN_CALLS = {
    "os.system", "os.popen", "os.execl", "os.execlp", "os.execv", "os.execvp", "os.spawnl",
    "os.spawnv", "eval", "exec", "__import__", "yaml.unsafe_load", "yaml.full_load",
    "yaml.load_all", "pandas.read_pickle", "torch.jit.load", "torch.hub.load",
    "torch.hub.load_state_dict_from_url",
}  # fmt: skip
SAFE_YAML_LOADERS = {"SafeLoader", "CSafeLoader"}


# --- the scanner ------------------------------------------------------------------------------


def _aliases(tree: ast.AST) -> dict[str, str]:
    """Local name -> dotted origin, from the module's imports (``import numpy as np`` ...)."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                names[alias.asname or alias.name.split(".")[0]] = (
                    alias.name if alias.asname else alias.name.split(".")[0]
                )
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return names


def _dotted(node: ast.AST, aliases: dict[str, str]) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(aliases.get(node.id, node.id))
    return ".".join(reversed(parts))


def _keyword(call: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_true(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def scan_python(source: str, where: str) -> list[str]:
    """Every unsafe construct in ``source``, as 'where:line: what'."""
    tree = ast.parse(source)
    aliases = _aliases(tree)
    problems = []

    def report(node: ast.AST, what: str) -> None:
        problems.append(f"{where}:{node.lineno}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            modules = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
            )
            for module in modules:
                if module.split(".")[0] in FORBIDDEN_MODULES:
                    report(node, f"imports {module}")
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func, aliases) or ""
        if name in FORBIDDEN_CALLS:
            report(node, f"calls {name}")
        if name == "torch.load" and not _is_true(_keyword(node, "weights_only")):
            report(node, "torch.load without weights_only=True")
        if name == "yaml.load":
            loader = _keyword(node, "Loader")
            loader_name = (_dotted(loader, aliases) or "") if loader is not None else ""
            if loader_name.rsplit(".", 1)[-1] not in SAFE_YAML_LOADERS:
                report(node, "yaml.load without SafeLoader")
        if _is_true(_keyword(node, "shell")):
            report(node, f"{name or 'a call'} with shell=True")
        if name.startswith("subprocess.") and node.args:
            first = node.args[0]
            if isinstance(first, ast.JoinedStr | ast.BinOp) or (
                isinstance(first, ast.Constant) and isinstance(first.value, str)
            ):
                report(node, f"{name} with a command string (pass an argument list)")
        if name.endswith(".load") and _is_true(_keyword(node, "allow_pickle")):
            report(node, f"{name} with allow_pickle=True")
    return problems


SHELL_START = re.compile(r"^(\s*)shell:\s*(.*)$")
PLACEHOLDER = re.compile(r"(?<!\{)\{([^{}]+)\}(?!\})")
# Unquoted placeholders that cannot carry a user string: constant flags, and wildcards whose
# wildcard_constraints (common.smk) allow only [A-Za-z0-9_.-].
SAFE_UNQUOTED = {
    "params.fail_fast",  # "--fail-fast" or ""
    "params.synth",  # "--synth-clips <path>" with the path shlex-quoted
    "params.method",  # a registry method name parsed from the constrained run wildcard
    "wildcards.run", "wildcards.T", "wildcards.shard", "resources.gpu", "threads",
}  # fmt: skip


def shell_strings(text: str) -> list[tuple[int, str]]:
    """(line number, text) of the string literals of every ``shell:`` directive."""
    lines = text.splitlines()
    found = []
    i = 0
    while i < len(lines):
        match = SHELL_START.match(lines[i])
        if not match:
            i += 1
            continue
        indent, pieces, start = len(match[1]), [match[2]], i + 1
        i += 1
        while i < len(lines) and (
            not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent
        ):
            pieces.append(lines[i].strip())
            i += 1
        literal = " ".join(p for p in pieces if p)
        found.append((start, "".join(ast.literal_eval(f"[{literal}]")) if literal else ""))
    return found


def scan_shell(text: str, where: str) -> list[str]:
    problems = []
    for line, command in shell_strings(text):
        for field in PLACEHOLDER.findall(command):
            if not field.endswith(":q") and field not in SAFE_UNQUOTED:
                problems.append(f"{where}:{line}: shell placeholder {{{field}}} is not quoted (:q)")
    return problems


def scan_workflow(text: str, where: str) -> list[str]:
    """Snakemake files are not plain Python: their shell strings, and the unsafe calls by text."""
    problems = scan_shell(text, where)
    patterns = {
        r"\btorch\.load\((?![^)]*weights_only=True)": "torch.load without weights_only=True",
        r"\byaml\.(unsafe_|full_)?load\((?![^)]*SafeLoader)": "yaml.load without SafeLoader",
        r"\bimport\s+(pickle|marshal|dill|shelve|cloudpickle)\b": "pickle-like import",
        r"shell\s*=\s*True": "shell=True",
        r"\bos\.(system|popen)\(": "os.system/os.popen",
        r"(?<![.\w])(eval|exec)\(": "eval/exec",
    }
    for number, line in enumerate(text.splitlines(), 1):
        for pattern, what in patterns.items():
            if re.search(pattern, line):
                problems.append(f"{where}:{number}: {what}")
    return problems


# --- the scan of the project ------------------------------------------------------------------


def test_python_sources_have_no_unsafe_loading_or_shell() -> None:
    assert len(PYTHON_SOURCES) > 20
    problems = []
    for path in PYTHON_SOURCES:
        problems += scan_python(path.read_text(), str(path.relative_to(ROOT)))
    assert problems == []


def test_workflow_shell_commands_quote_every_user_string() -> None:
    problems, commands = [], 0
    for path in WORKFLOW_FILES:
        text = path.read_text()
        commands += len(shell_strings(text))
        problems += scan_workflow(text, str(path.relative_to(ROOT)))
    assert commands >= 10  # synth, manifest, flow, segment, select, mask_quality, train, ...
    assert problems == []
    # params.synth is allowed unquoted because it quotes its path itself.
    assert "shlex.quote(input.clips[0])" in (ROOT / "workflow/rules/evaluate.smk").read_text()


def test_every_torch_load_in_the_sources_is_found_and_safe() -> None:
    """The scan sees the real loaders (not a vacuous pass): checkpoints.py calls torch.load."""
    calls = []
    for path in PYTHON_SOURCES:
        tree = ast.parse(path.read_text())
        aliases = _aliases(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _dotted(node.func, aliases) == "torch.load":
                calls.append((path.name, _is_true(_keyword(node, "weights_only"))))
    assert ("checkpoints.py", True) in calls
    assert all(safe for _, safe in calls), calls


UNSAFE_SNIPPETS = {
    "import pickle": "imports pickle",
    "from marshal import loads": "imports marshal",
    "import torch\ntorch.load('x.pt')": "torch.load without weights_only=True",
    "from torch import load\nload('x.pt', weights_only=False)": "torch.load without",
    "import yaml\nyaml.load(open('c'))": "yaml.load without SafeLoader",
    "import yaml\nyaml.load(open('c'), Loader=yaml.Loader)": "yaml.load without SafeLoader",
    "import yaml\nyaml.unsafe_load('a')": "calls yaml.unsafe_load",
    "import subprocess\nsubprocess.run(['ls'], shell=True)": "with shell=True",
    "import subprocess as sp\nsp.check_call(f'ls {d}')": "with a command string",
    "import os\nos.system('ls')": "calls os.system",
    "eval('1+1')": "calls eval",
    "exec('x=1')": "calls exec",
    "import numpy as np\nnp.load('a.npy', allow_pickle=True)": "allow_pickle=True",
    "import pandas as pd\npd.read_pickle('a')": "calls pandas.read_pickle",
}
SAFE_SNIPPETS = [
    "import torch\ntorch.load('x.pt', map_location='cpu', weights_only=True)",
    "import yaml\nyaml.safe_load('a: 1')\nyaml.load('a', Loader=yaml.SafeLoader)",
    "import subprocess\nsubprocess.run(['snakemake', '-n'], check=True)",
    "model.eval()",
]


@pytest.mark.parametrize(("snippet", "what"), UNSAFE_SNIPPETS.items())
def test_scanner_catches_each_unsafe_construct(snippet: str, what: str) -> None:
    problems = scan_python(snippet, "snippet")
    assert len(problems) == 1 and what in problems[0], problems


@pytest.mark.parametrize("snippet", SAFE_SNIPPETS)
def test_scanner_accepts_the_safe_forms(snippet: str) -> None:
    assert scan_python(snippet, "snippet") == []


def test_shell_scanner_flags_an_unquoted_user_string() -> None:
    rule = (
        "rule x:\n"
        "    shell:\n"
        '        "python -m flowguide flow --out {output.flow:q} --device {params.device}"\n'
        '        " {params.fail_fast} > {log:q} 2>&1"\n'
        "\n"
        "rule y:\n"
        '    shell: "echo {{literal braces}} {wildcards.shard}"\n'
    )
    assert [c for _, c in shell_strings(rule)] == [
        "python -m flowguide flow --out {output.flow:q} --device {params.device}"
        " {params.fail_fast} > {log:q} 2>&1",
        "echo {{literal braces}} {wildcards.shard}",
    ]
    problems = scan_shell(rule, "rule")
    assert len(problems) == 1 and "{params.device}" in problems[0]


# --- hostile files ----------------------------------------------------------------------------


class Payload:
    """Unpickling this object creates ``marker`` (a stand-in for arbitrary code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


class PlainObject:
    def __init__(self) -> None:
        self.weights = [1.0, 2.0]


def test_checkpoint_with_a_pickled_payload_is_refused_naming_the_file(tmp_path: Path) -> None:
    marker = tmp_path / "payload_ran"
    hostile = tmp_path / "hostile.pt"
    torch.save({"model": {"w": torch.ones(2)}, "extra": Payload(marker)}, hostile)
    with pytest.raises(FlowguideError, match="hostile.pt") as info:
        load_weights(hostile, "test model")
    assert "weights" in str(info.value)
    assert not marker.exists()
    # Control: an unsafe load of the same file runs the payload, so the refusal above is real.
    torch.load(hostile, weights_only=False)
    assert marker.is_dir()


def test_checkpoint_with_a_custom_class_instance_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "custom.pt"
    torch.save({"model": PlainObject()}, path)
    with pytest.raises(FlowguideError, match="custom.pt") as info:
        load_weights(path, "test model")
    message = str(info.value)
    # It says what the file holds and what it must be, and never relays torch's advice to
    # load with weights_only=False (which would run the file's code).
    assert "PlainObject" in message and "state_dict" in message
    assert "weights_only" not in message and "False" not in message and "trust the" not in message
    assert info.value.__cause__ is None  # torch's message does not ride along in the traceback
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:100])
    with pytest.raises(FlowguideError, match=r"truncated\.pt: cannot read test model weights"):
        load_weights(truncated, "test model")
    plain = tmp_path / "plain.pt"
    torch.save({"model": {"w": torch.arange(3.0)}, "epoch": 2, "name": "ok"}, plain)
    loaded = load_weights(plain, "test model")
    assert loaded["epoch"] == 2 and torch.equal(loaded["model"]["w"], torch.arange(3.0))


def test_training_checkpoint_loader_refuses_a_payload(tmp_path: Path) -> None:
    from flowguide.train.checkpoint import load_checkpoint

    marker = tmp_path / "payload_ran"
    hostile = tmp_path / "last.pt"
    torch.save({"format": "x", "model": {}, "rng": Payload(marker)}, hostile)
    with pytest.raises(FlowguideError, match="last.pt"):
        load_checkpoint(hostile)
    assert not marker.exists()


HOSTILE_YAML = "results: !!python/object/apply:os.mkdir [{marker}]\n"


def test_config_yaml_with_a_python_tag_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "yaml_payload_ran"
    config = tmp_path / "config.yaml"
    config.write_text(HOSTILE_YAML.format(marker=marker))
    with pytest.raises(yaml.YAMLError):
        load_config(config)
    assert not marker.exists()


def test_snakemake_refuses_a_hostile_config_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "yaml_payload_ran"
    (tmp_path / "config.yaml").write_text(HOSTILE_YAML.format(marker=marker))
    snakemake = Path(sys.executable).with_name("snakemake")
    proc = subprocess.run(
        [str(snakemake), "-s", str(ROOT / "Snakefile"), "-n", "--cores", "1"],
        cwd=tmp_path, capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode != 0
    assert not marker.exists(), proc.stdout + proc.stderr
