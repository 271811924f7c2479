"""The output file of an `append_row` job, grown from its mini-batches' parts in mini-batch order while
the job runs (so that little is left to merge when the last one ends), written aside and renamed at the
end: a reader never sees half a file, and a job that does not complete leaves none."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any


class Merger:
    def __init__(self, target: Path) -> None:
        self.target = target
        self.staging = target.with_name(f".{target.name}.partial")
        self._text: Any = None  # the staging file, for text parts
        self._parquet: Any = None  # a pyarrow ParquetWriter, for Arrow parts (the no-code ONNX driver's)

    def add(self, part: Path) -> None:
        """One part, after those added before it: text appended as it is; Arrow IPC as row groups."""
        if part.suffix == ".arrow":
            import pyarrow as pa
            import pyarrow.parquet as pq

            with pa.memory_map(str(part)) as source:
                table = pa.ipc.open_file(source).read_all()
                if self._parquet is None:
                    self._parquet = pq.ParquetWriter(self.staging, table.schema)
                self._parquet.write_table(table)
            return
        if self._text is None:
            self._text = self.staging.open("wb")
        with part.open("rb") as src:
            shutil.copyfileobj(src, self._text, 1 << 20)

    def commit(self) -> None:
        """The output in place (an empty one when no part had rows)."""
        self._close()
        if not self.staging.exists():
            self.staging.touch()
        os.replace(self.staging, self.target)

    def discard(self) -> None:
        self._close()
        self.staging.unlink(missing_ok=True)

    def _close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
            self._parquet = None
        if self._text is not None:
            self._text.close()
            self._text = None
