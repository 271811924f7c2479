"""`python -m appliance.scoring.shard --input DIR --output DIR`: one pod of a Kubernetes Indexed Job.

Shard i of N (JOB_COMPLETION_INDEX, APPLIANCE_SHARDS) lists the input as the local runner does (every
file under it, hidden ones left out, in a stable order), cuts it into mini-batches of
AZUREML_BATCH_MINI_BATCH_SIZE files and scores every N-th one from i with the batch worker's drivers
(score.py, MLflow or ONNX: appliance.scoring.batch.load). With append_row each mini-batch's output is
`<output>/parts/<mini-batch index>.txt` (or `.parquet`), written under a temporary name and renamed, so a
retried pod skips the parts that exist; `<output>/shards/<i>.json` sums the shard up. Exit status 1 when
more items failed than AZUREML_BATCH_ERROR_THRESHOLD tolerates (-1, the default: all), so the Job's
backoffLimitPerIndex retries the index.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from appliance.scoring import batch


def input_files(path: Path) -> list[str]:
    if path.is_file():
        return [str(path)]
    found: list[str] = []
    for root, folders, files in os.walk(path):
        folders[:] = sorted(f for f in folders if not f.startswith("."))
        found += [os.path.join(root, f) for f in sorted(files) if not f.startswith(".")]
    return found


def share(count: int, shards: int, index: int) -> list[int]:
    """The mini-batch indexes shard `index` of `shards` scores: every shards-th one from index."""
    return list(range(index, count, shards))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m appliance.scoring.shard")
    parser.add_argument("--input", required=True, help="A file or folder of files to score")
    parser.add_argument("--output", required=True, help="Folder the parts and the shard summary go to")
    parser.add_argument("--index", type=int, default=int(os.environ.get("JOB_COMPLETION_INDEX", "0")))
    parser.add_argument("--shards", type=int, default=int(os.environ.get("APPLIANCE_SHARDS", "1")))
    parser.add_argument("--mini-batch-size", type=int,
                        default=int(os.environ.get("AZUREML_BATCH_MINI_BATCH_SIZE", "10")))
    args = parser.parse_args(argv)
    if not (args.shards >= 1 and 0 <= args.index < args.shards and args.mini_batch_size >= 1):
        print(f"shard {args.index} of {args.shards}, mini-batch size {args.mini_batch_size}: out of range",
              file=sys.stderr)
        return 2
    threshold = int(os.environ.get("AZUREML_BATCH_ERROR_THRESHOLD", "-1"))
    append = os.environ.get("AZUREML_BATCH_OUTPUT_ACTION", "append_row").lower() == "append_row"
    files = input_files(Path(args.input))
    batches = [files[i:i + args.mini_batch_size] for i in range(0, len(files), args.mini_batch_size)]
    mine = share(len(batches), args.shards, args.index)
    output = Path(args.output)
    (output / "parts").mkdir(parents=True, exist_ok=True)
    (output / "shards").mkdir(parents=True, exist_ok=True)
    driver = batch.load()
    summary: dict[str, Any] = {"index": args.index, "shards": args.shards, "mini_batches": len(mine),
                               "succeeded": 0, "failed": 0, "skipped": 0, "errors": []}
    started = time.perf_counter()
    for idx in mine:
        part = output / "parts" / f"{idx:06d}"
        if append and part.with_name(part.name + driver.suffix).exists():
            summary["skipped"] += 1  # written by an earlier attempt of this index
            continue
        try:
            scored = driver.score(batches[idx])
            if append:
                batch._write_part(str(part) + driver.suffix, scored.write)
            summary["succeeded"] += scored.items
        except Exception:
            summary["failed"] += len(batches[idx])
            summary["errors"].append({"mini_batch": idx, "error": traceback.format_exc(limit=5)})
            print(f"mini-batch {idx} failed:\n{traceback.format_exc()}", file=sys.stderr, flush=True)
    summary["ms"] = round((time.perf_counter() - started) * 1000, 3)
    (output / "shards" / f"{args.index}.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "errors"}), flush=True)
    return 1 if threshold != -1 and summary["failed"] > threshold else 0


if __name__ == "__main__":
    sys.exit(main())
