"""Diving48's folder layout: ``rgb/<vid_name>.mp4``, the V2 split JSONs and the vocabulary.

SynthDive writes the same layout, so one reader serves both.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowguide.utils.failures import FlowguideError, VideoError

SPLITS = ("train", "test")
VIDEO_SUFFIX = ".mp4"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_\-][A-Za-z0-9_\-.]*$")


class DatasetError(FlowguideError):
    """A malformed dataset file or record."""


@dataclass(frozen=True)
class ClipRecord:
    vid_name: str
    split: str
    label: int
    start_frame: int
    end_frame: int  # inclusive, as in Diving48's JSON
    position: int = 0  # index in its split's JSON, rejected records counted (its shard slot)


@dataclass(frozen=True)
class DatasetLayout:
    root: Path
    videos_dir: str = "rgb"
    train_json: str = "Diving48_V2_train.json"
    test_json: str = "Diving48_V2_test.json"
    vocab_json: str = "Diving48_vocab.json"

    @classmethod
    def from_config(cls, dataset: dict[str, Any], root: str | os.PathLike) -> DatasetLayout:
        keys = ("videos_dir", "train_json", "test_json", "vocab_json")
        return cls(root=Path(root), **{k: dataset[k] for k in keys if k in dataset})

    def split_json(self, split: str) -> Path:
        return self.root / (self.train_json if split == "train" else self.test_json)

    @property
    def vocab_path(self) -> Path:
        return self.root / self.vocab_json

    def video_path(self, vid_name: str) -> Path:
        check_vid_name(vid_name)
        return self.root / self.videos_dir / f"{vid_name}{VIDEO_SUFFIX}"

    def check_inside(self, path: Path) -> Path:
        """Symlink policy: a video file may be a link, but what it resolves to must lie in the
        videos folder (itself resolved, so a videos folder that is one link to shared storage
        is fine). A per-file link out of it is refused: the manifest never reads a file outside
        the dataset the config names."""
        folder = (self.root / self.videos_dir).resolve()
        real = path.resolve()
        if not real.is_relative_to(folder):
            raise VideoError(
                f"{path}: links to {real}, outside the videos folder {folder} (refused); copy "
                f"the file into the folder, or link the whole folder ({self.videos_dir}/) instead"
            )
        return path


def check_vid_name(vid_name: str) -> str:
    """Reject names that could escape the videos folder (separators, '..') or are not plain."""
    if (
        not isinstance(vid_name, str)
        or not _SAFE_NAME.match(vid_name)
        or ".." in vid_name
        or "/" in vid_name
        or "\\" in vid_name
    ):
        raise DatasetError(f"vid_name {vid_name!r} is not a plain file name (rejected)")
    return vid_name


def _load_json(path: Path) -> Any:
    if not path.exists():
        raise DatasetError(f"{path}: dataset file does not exist")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc})") from exc


def read_vocab(layout: DatasetLayout) -> list[list[str]]:
    """One ``[takeoff, somersaults, twists, flight position]`` entry per class."""
    vocab = _load_json(layout.vocab_path)
    if not isinstance(vocab, list) or not all(isinstance(v, list) for v in vocab):
        raise DatasetError(f"{layout.vocab_path}: expected a list of per-class lists")
    return vocab


def parse_record(raw: Any, split: str, num_classes: int, source: Path, position: int) -> ClipRecord:
    """One JSON record; every problem names the file, the position and the key."""
    where = f"{source}[{position}]"
    if not isinstance(raw, dict):
        raise DatasetError(f"{where}: record is not an object")
    for key in ("vid_name", "label", "start_frame", "end_frame"):
        if key not in raw:
            raise DatasetError(f"{where}: missing key '{key}'")
    try:
        vid_name = check_vid_name(raw["vid_name"])
    except DatasetError as exc:
        raise DatasetError(f"{where}: {exc}") from None
    label, start, end = raw["label"], raw["start_frame"], raw["end_frame"]
    for key, value in (("label", label), ("start_frame", start), ("end_frame", end)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise DatasetError(
                f"{where} ({vid_name}): key '{key}' must be an integer, got {value!r}"
            )
    if not 0 <= label < num_classes:
        raise DatasetError(
            f"{where} ({vid_name}): label {label} out of range 0..{num_classes - 1}"
            " (vocabulary size)"
        )
    if start < 0 or end < start:
        raise DatasetError(f"{where} ({vid_name}): bad frame range {start}..{end}")
    return ClipRecord(vid_name, split, label, start, end, position)


def read_split(
    layout: DatasetLayout, split: str, num_classes: int
) -> tuple[list[ClipRecord], list[tuple[str, str]]]:
    """Records of one split in file order, and (name, reason) for each rejected record."""
    path = layout.split_json(split)
    raw = _load_json(path)
    if not isinstance(raw, list):
        raise DatasetError(f"{path}: expected a list of records")
    records, rejected = [], []
    for position, item in enumerate(raw):
        try:
            records.append(parse_record(item, split, num_classes, path, position))
        except DatasetError as exc:
            name = (
                item.get("vid_name", f"#{position}") if isinstance(item, dict) else f"#{position}"
            )
            rejected.append((str(name), str(exc)))
    return records, rejected
