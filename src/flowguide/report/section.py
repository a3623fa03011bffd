"""The report's building blocks: a section (text, tables, images, what is missing) and the
built report."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd


@dataclass
class Section:
    title: str
    text: list[str] = field(default_factory=list)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)  # (caption, table)
    images: list[tuple[str, str]] = field(default_factory=list)  # (caption, path relative to out)
    missing: list[str] = field(default_factory=list)


@dataclass
class Report:
    sections: list[Section]
    tables_written: dict[str, Path]
    figures_written: dict[str, Path]


def first_rows(table: pd.DataFrame, rows: int) -> pd.DataFrame:
    return table.head(rows)
