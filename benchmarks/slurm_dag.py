"""Wall time of the tests' tiny DAG (tests/test_workflow.py's TINY config, 2 runs, 16 jobs) on
one machine against through SLURM with the repository's profile, each in a fresh folder.

    python benchmarks/slurm_dag.py        # needs root and SLURM (tests/slurm/install.sh)

The SLURM run uses a single-node SLURM on loopback (tests/slurm/start.sh, started if it is not
up), so the difference is the executor's overhead: sbatch, a Snakemake per job, status checks.
Ends with ``ratio slurm_vs_local_tiny_dag <SLURM wall / local wall>``.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from test_slurm import CLUSTER  # noqa: E402
from test_workflow import TINY  # noqa: E402

SNAKEMAKE = Path(sys.executable).with_name("snakemake")


def run(workdir: Path, *args: str) -> float:
    (workdir / "config.yaml").write_text(yaml.safe_dump({**TINY, "cluster": CLUSTER}))
    start = time.monotonic()
    subprocess.run(
        [str(SNAKEMAKE), "-s", str(ROOT / "Snakefile"), *args],
        cwd=workdir, check=True, capture_output=True, timeout=3600,
    )  # fmt: skip
    return time.monotonic() - start


def main() -> None:
    subprocess.run(["bash", str(ROOT / "tests" / "slurm" / "start.sh")], check=True, timeout=300)
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("local", "slurm"):
            (Path(tmp) / name).mkdir()
        local = run(Path(tmp) / "local", "--cores", "2")
        slurm = run(Path(tmp) / "slurm", "--profile", str(ROOT / "workflow/profiles/slurm"))
    print(f"local --cores 2: {local:.0f} s")
    print(f"--profile slurm: {slurm:.0f} s")
    print(f"ratio slurm_vs_local_tiny_dag {slurm / local:.2f}")


if __name__ == "__main__":
    main()
