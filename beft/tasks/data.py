"""File readers that name the file and line of any malformed record."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from beft.tasks.base import TaskDataError


def where(rel: str, lineno: int) -> str:
    return f"{rel} line {lineno}"


def read_lines(path: Path, rel: str) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, line without newline); blank lines are skipped."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            for lineno, line in enumerate(f, start=1):
                line = line.rstrip("\r\n")
                if line.strip():
                    yield lineno, line
    except (OSError, UnicodeDecodeError) as e:
        raise TaskDataError(f"{rel}: cannot read ({e})") from e


def read_tsv(path: Path, rel: str, header: bool) -> Iterator[tuple[int, list[str], dict[str, int]]]:
    """Yield (line number, fields, column index by name); GLUE files are split on tabs, unquoted."""
    columns: dict[str, int] = {}
    for lineno, line in read_lines(path, rel):
        fields = line.split("\t")
        if header and not columns:
            columns = {name: i for i, name in enumerate(fields)}
            continue
        yield lineno, fields, columns


def column(fields: list[str], columns: Mapping[str, int], key: str | int, loc: str) -> str:
    """One TSV cell by header name or index; a missing one is a TaskDataError at `loc`."""
    idx = key if isinstance(key, int) else columns.get(key)
    if idx is None:
        raise TaskDataError(f"{loc}: file has no column '{key}' (columns: {', '.join(columns)})")
    if idx >= len(fields):
        raise TaskDataError(f"{loc}: missing column '{key}' ({len(fields)} fields)")
    return fields[idx]


def read_jsonl(path: Path, rel: str) -> Iterator[tuple[int, dict]]:
    for lineno, line in read_lines(path, rel):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise TaskDataError(f"{where(rel, lineno)}: not valid JSON ({e.msg})") from e
        if not isinstance(obj, dict):
            raise TaskDataError(f"{where(rel, lineno)}: expected a JSON object")
        yield lineno, obj


def read_json(path: Path, rel: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise TaskDataError(f"{where(rel, e.lineno)}: not valid JSON ({e.msg})") from e
    except (OSError, UnicodeDecodeError) as e:
        raise TaskDataError(f"{rel}: cannot read ({e})") from e


def get(obj: Mapping, key: str, loc: str) -> Any:
    if key not in obj:
        raise TaskDataError(f"{loc}: missing field '{key}'")
    return obj[key]


def label_index(value: Any, labels: tuple, loc: str) -> int:
    """Position of `value` in `labels` (compared as strings, so 1 == '1', True == 'True')."""
    names = [str(x) for x in labels]
    if str(value) not in names:
        raise TaskDataError(f"{loc}: label '{value}' is not one of {','.join(names)}")
    return names.index(str(value))


def to_float(value: str, loc: str) -> float:
    try:
        return float(value)
    except ValueError as e:
        raise TaskDataError(f"{loc}: score '{value}' is not a number") from e
