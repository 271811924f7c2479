"""Reading what the data collector wrote (appliance/scoring/collect.py), with DuckDB over its files.

`$APPLIANCE_HOME/data-collector/endpoint=E/deployment=D/collection=C/hour=YYYY-MM-DDTHH/*.parquet`
(and `*.jsonl`, from workers without pyarrow). Files are picked by their hour folder (so a window reads
only its hours), rows by their `timestamp`. The aggregation a drift report needs (per feature: counts,
nulls, min, max, standard deviation, a histogram) is one or two scans per source, on an in-memory
DuckDB connection of its own: never the registry's database, never its lock.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

FOLDER = "data-collector"
HOUR = "%Y-%m-%dT%H"
META = ("correlation_id", "timestamp")
NUMERIC = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT",
           "FLOAT", "DOUBLE", "REAL", "DECIMAL")
CATEGORICAL = ("VARCHAR", "BOOLEAN")


def root(home: Path) -> Path:
    return home / FOLDER


def deployment_folders(home: Path, endpoint: str, deployment: str | None = None) -> list[Path]:
    base = root(home) / f"endpoint={endpoint}"
    if deployment is not None:
        return [base / f"deployment={deployment}"]
    return sorted(base.glob("deployment=*")) if base.is_dir() else []


def collections(home: Path, endpoint: str, deployment: str | None = None) -> list[str]:
    names = {p.name.partition("=")[2] for d in deployment_folders(home, endpoint, deployment)
             for p in (d.glob("collection=*") if d.is_dir() else [])}
    return sorted(names)


def _hour(folder: Path) -> datetime | None:
    try:
        return datetime.strptime(folder.name.partition("=")[2], HOUR)
    except ValueError:
        return None


@dataclass
class Source:
    """Rows to read: files, and (for collected data) the [start, end) of their timestamps."""

    parquet: list[str] = field(default_factory=list)
    jsonl: list[str] = field(default_factory=list)
    csv: list[str] = field(default_factory=list)
    start: datetime | None = None
    end: datetime | None = None
    what: str = ""

    @property
    def empty(self) -> bool:
        return not (self.parquet or self.jsonl or self.csv)


def collected(home: Path, endpoint: str, deployment: str | None, collection: str, start: datetime,
              end: datetime) -> Source:
    """The files of a collection whose hour overlaps [start, end) (naive UTC)."""
    source = Source(start=start, end=end, what=f"{collection} of {endpoint}"
                    + (f"/{deployment}" if deployment else "") + f" from {start:%Y-%m-%d %H:%M} to {end:%H:%M} UTC")
    for folder in deployment_folders(home, endpoint, deployment):
        for hour in sorted((folder / f"collection={collection}").glob("hour=*")):
            at = _hour(hour)
            if at is None or at + timedelta(hours=1) <= start or at >= end:
                continue
            source.parquet += sorted(str(p) for p in hour.glob("*.parquet"))
            source.jsonl += sorted(str(p) for p in hour.glob("*.jsonl"))
    return source


def from_file(path: Path) -> Source:
    """A baseline: a Parquet, CSV or JSON (lines) file, or a folder of Parquet / JSON lines files."""
    if path.is_dir():
        return Source(parquet=sorted(str(p) for p in path.rglob("*.parquet")),
                      jsonl=sorted(str(p) for p in path.rglob("*.jsonl")), what=str(path))
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return Source(parquet=[str(path)], what=str(path))
    if suffix in (".jsonl", ".json", ".ndjson"):
        return Source(jsonl=[str(path)], what=str(path))
    if suffix in (".csv", ".tsv", ".txt"):
        return Source(csv=[str(path)], what=str(path))
    raise ValueError(f"baseline {path}: a .parquet, .csv or .jsonl file (or a folder of them) is needed")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _files(paths: list[str]) -> str:
    return "[" + ", ".join(map(_literal, paths)) + "]"


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def relation(source: Source) -> str:
    """A FROM clause over the source's rows (in the window, for collected data)."""
    parts = []
    options = "union_by_name = true, hive_partitioning = false"
    if source.parquet:
        parts.append(f"SELECT * FROM read_parquet({_files(source.parquet)}, {options})")
    if source.jsonl:
        parts.append(f"SELECT * FROM read_json_auto({_files(source.jsonl)}, {options})")
    if source.csv:
        parts.append(f"SELECT * FROM read_csv_auto({_files(source.csv)}, {options})")
    if not parts:
        raise ValueError("no files to read")
    sql = " UNION ALL BY NAME ".join(parts)
    if source.start is not None and source.end is not None:
        sql = (f"SELECT * FROM ({sql}) WHERE CAST(\"timestamp\" AS TIMESTAMP) >= "
               f"{_literal(source.start.isoformat())}::TIMESTAMP AND CAST(\"timestamp\" AS TIMESTAMP) < "
               f"{_literal(source.end.isoformat())}::TIMESTAMP")
    return f"({sql})"


class Reader:
    """One in-memory DuckDB connection for one report."""

    def __init__(self) -> None:
        self.con = duckdb.connect(":memory:")

    def close(self) -> None:
        self.con.close()

    def columns(self, source: Source) -> dict[str, str]:
        """{column: "numeric" | "categorical"} of the source, but the collector's own columns."""
        rows = self.con.execute(f"DESCRIBE SELECT * FROM {relation(source)}").fetchall()
        kinds: dict[str, str] = {}
        for name, dtype, *_ in rows:
            base = str(dtype).split("(")[0].upper()
            if name in META:
                continue
            if base in NUMERIC:
                kinds[name] = "numeric"
            elif base in CATEGORICAL:
                kinds[name] = "categorical"
        return kinds

    def numeric_stats(self, source: Source, features: list[str]) -> tuple[int, dict[str, dict[str, Any]]]:
        """(rows, {feature: {nulls, min, max, std}}): one scan."""
        if not features:
            return self.count(source), {}
        parts = ["count(*)"]
        for f in features:
            x = f"CAST({ident(f)} AS DOUBLE)"
            parts += [f"count(*) - count({x})", f"min({x})", f"max({x})", f"stddev_pop({x})"]
        row = self.con.execute(f"SELECT {', '.join(parts)} FROM {relation(source)}").fetchone()
        assert row is not None
        out = {f: {"nulls": row[1 + 4 * i], "min": row[2 + 4 * i], "max": row[3 + 4 * i], "std": row[4 + 4 * i]}
               for i, f in enumerate(features)}
        return row[0], out

    def count(self, source: Source) -> int:
        row = self.con.execute(f"SELECT count(*) FROM {relation(source)}").fetchone()
        return int(row[0]) if row else 0

    def histograms(self, source: Source, bins: dict[str, tuple[float, float, int, float, float]]
                   ) -> dict[str, tuple[list[int], int]]:
        """{feature: (counts of its equal-width bins, values outside [low, high])} for
        bins = {feature: (start, width, number of bins, low, high)}: one scan. Values past the ends
        count in the end bins."""
        if not bins:
            return {}
        parts = []
        for f, (start, width, n, low, high) in bins.items():
            x = f"CAST({ident(f)} AS DOUBLE)"
            index = "0" if width <= 0 else f"least(greatest(floor(({x} - {start!r}) / {width!r}), 0), {n - 1})::BIGINT"
            parts += [f"histogram(CASE WHEN {x} IS NOT NULL THEN {index} END)",
                      f"count(*) FILTER (WHERE {x} < {low!r} OR {x} > {high!r})"]
        row = self.con.execute(f"SELECT {', '.join(parts)} FROM {relation(source)}").fetchone()
        assert row is not None
        out: dict[str, tuple[list[int], int]] = {}
        for i, (f, (_, _, n, _, _)) in enumerate(bins.items()):
            counts = [0] * n
            for k, v in _mapping(row[2 * i]).items():
                counts[int(k)] = int(v)
            out[f] = (counts, int(row[2 * i + 1] or 0))
        return out

    def categories(self, source: Source, features: list[str]) -> tuple[int, dict[str, tuple[dict[str, int], int]]]:
        """(rows, {feature: ({value: count}, nulls)}): one scan."""
        parts = ["count(*)"]
        for f in features:
            x = f"CAST({ident(f)} AS VARCHAR)"
            parts += [f"histogram({x})", f"count(*) - count({x})"]
        row = self.con.execute(f"SELECT {', '.join(parts)} FROM {relation(source)}").fetchone()
        assert row is not None
        return int(row[0]), {f: ({str(k): int(v) for k, v in _mapping(row[1 + 2 * i]).items()},
                                 int(row[2 + 2 * i])) for i, f in enumerate(features)}


def _mapping(value: Any) -> dict[Any, Any]:
    if value is None:
        return {}
    if isinstance(value, dict) and set(value) == {"key", "value"} and isinstance(value["key"], list):
        return dict(zip(value["key"], value["value"], strict=True))
    return dict(value)


def prune(home: Path, older_than: datetime) -> int:
    """Delete the hour folders that ended before `older_than` (naive UTC); how many went."""
    removed = 0
    base = root(home)
    if not base.is_dir():
        return 0
    for hour in base.glob("endpoint=*/deployment=*/collection=*/hour=*"):
        at = _hour(hour)
        if at is not None and at + timedelta(hours=1) <= older_than:
            shutil.rmtree(hour, ignore_errors=True)
            removed += 1
    return removed
