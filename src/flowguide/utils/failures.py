"""Per-video failures: recorded, reported, and never allowed to stop the other videos."""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from flowguide.utils.atomic import atomic_path

# severity: "error" = the video was left out of the stage's output; "warning" = kept, with a
# defect the reason names (e.g. a video shorter than its record says, within the tolerance).
FAILURE_COLUMNS = ("stage", "video", "reason", "severity")
SEVERITIES = ("error", "warning")
log = logging.getLogger("flowguide")


class FlowguideError(Exception):
    """An error a user can act on; its message names the file or key at fault."""


class VideoError(FlowguideError):
    """A video that cannot be read."""


@dataclass
class FailureLog:
    """Collects per-video failures of one job; ``fail_fast`` re-raises the first one."""

    stage: str
    fail_fast: bool = False
    rows: list[dict[str, str]] = field(default_factory=list)

    def record(self, video: str, error: BaseException | str) -> None:
        reason = str(error) if isinstance(error, str) else f"{type(error).__name__}: {error}"
        reason = " ".join(reason.split())
        log.warning("%s: video %s failed: %s", self.stage, video, reason)
        self.rows.append(
            {"stage": self.stage, "video": video, "reason": reason, "severity": "error"}
        )
        if self.fail_fast:
            if isinstance(error, BaseException):
                raise error
            raise FlowguideError(f"{self.stage}: {video}: {reason}")

    def warn(self, video: str, reason: str) -> None:
        """A defect that does not stop the video (never raises, even with ``fail_fast``)."""
        reason = " ".join(reason.split())
        log.warning("%s: video %s: %s", self.stage, video, reason)
        self.rows.append(
            {"stage": self.stage, "video": video, "reason": reason, "severity": "warning"}
        )

    def write(self, path: str | os.PathLike) -> None:
        write_failures(path, self.rows)


def write_failures(path: str | os.PathLike, rows: list[dict[str, str]]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FAILURE_COLUMNS)
        writer.writeheader()
        writer.writerows({"severity": "error", **row} for row in rows)


def read_failures(paths: list[str | os.PathLike]) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for path in paths:
        if Path(path).exists():
            with open(path, newline="") as fh:
                rows.extend(csv.DictReader(fh))
    return rows
