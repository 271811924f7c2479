"""`python -m appliance.scoring.batch --reply-fd FD`: one batch worker, in a deployment's environment.

Configured as Azure configures a batch deployment, through the environment: AML_APP_ROOT and
AZUREML_ENTRY_SCRIPT (a score.py: `init()` once, then `run(mini_batch)` with a list of file paths), else
MLFLOW_MODEL_FOLDER (a no-code MLflow model: one `[file name, prediction]` line per prediction), else
AZUREML_MODEL_DIR holding one .onnx file (a no-code ONNX model over tabular files: appliance.scoring.tabular).
AZUREML_BATCH_OUTPUT_ACTION (append_row, summary_only), AZUREML_BATCH_OUTPUT_FILE_NAME (a name ending in
.parquet makes the ONNX driver write Parquet) and AZUREML_LOG_LEVEL shape the rest.

The daemon's requests come on stdin, a JSON object a line: `{"idx", "files", "part"}`; EOF ends the worker.
Replies go to the reply descriptor, never to stdout or stderr, which are the script's: first
`{"ready": true, "driver", "init_ms"}` (or `{"ready": false, "error"}`, and exit 1), then per request
`{"idx", "ok": true, "items", "rows", "part", "ms"}` or `{"idx", "ok": false, "error"}`. With append_row
a request's output is `<part>.txt` (or `.arrow`, which the daemon merges into one Parquet file), written
under a temporary name and renamed: a part that exists is complete.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from appliance.scoring.__main__ import die_with_parent
from appliance.scoring.batch_output import append_row_text, item_count

ACTIONS = ("append_row", "summary_only")
LEVELS = ("debug", "info", "warning", "error", "critical")
MLFLOW_EXTENSIONS = (".csv", ".parquet")


@dataclass(frozen=True)
class Scored:
    items: int  # what the job counts as succeeded (or failed, had it raised)
    rows: int  # records the part holds
    write: Callable[[IO[bytes]], object]  # the part's bytes, into a file opened for it


class Driver(Protocol):
    name: str
    suffix: str  # of its parts

    def score(self, files: list[str]) -> Scored: ...


def _text(result: Any, items: int | None = None) -> Scored:
    """A result written as append_row writes it (rendered only if a part is written); its items are its
    records unless said otherwise."""
    rows = item_count(result)
    return Scored(rows if items is None else items, rows, lambda sink: sink.write(append_row_text(result).encode()))


class ScriptDriver:
    name, suffix = "score.py", ".txt"

    def __init__(self, app_root: Path, entry_script: str) -> None:
        path = app_root / entry_script
        sys.path.insert(0, str(path.parent))  # the script's own modules import, as when Python runs it
        spec = importlib.util.spec_from_file_location("entry_module", path)
        if spec is None or spec.loader is None:
            raise ImportError(f"can't load {path} as a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # what pickle and dataclasses look classes up in
        spec.loader.exec_module(module)
        for fn in ("init", "run"):
            if not callable(getattr(module, fn, None)):
                raise AttributeError(f"the scoring script {path} has no {fn}() function")
        module.init()
        self._run: Callable[[list[str]], Any] = module.run

    def score(self, files: list[str]) -> Scored:
        result = self._run(files)
        return _text(result)


class MlflowDriver:
    name, suffix = "mlflow", ".txt"

    def __init__(self) -> None:
        from appliance.scoring.mlflow_model import MlflowModel

        self.model = MlflowModel.from_environment()

    def score(self, files: list[str]) -> Scored:
        import pandas as pd

        from appliance.scoring.mlflow_model import jsonable

        lines: list[list[Any]] = []
        for path in files:
            suffix = Path(path).suffix.lower()
            if suffix not in MLFLOW_EXTENSIONS:
                raise ValueError(f"{path}: MLflow batch deployments read {' and '.join(MLFLOW_EXTENSIONS)} files")
            frame = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
            predictions = jsonable(self.model.pyfunc.predict(self.model._typed(frame)))
            name = os.path.basename(path)
            lines += [[name, p] for p in _prediction_rows(predictions)]
        return _text(lines, len(files))


def _prediction_rows(predictions: Any) -> list[Any]:
    """One value per prediction row, from predictions as JSON values (named outputs: a dict per row)."""
    if isinstance(predictions, dict):
        return [dict(zip(predictions, row, strict=True)) for row in zip(*predictions.values(), strict=True)]
    return predictions if isinstance(predictions, list) else [predictions]


class OnnxDriver:
    name = "onnx"

    def __init__(self, model_dir: Path, parquet: bool) -> None:
        from appliance.scoring import tabular

        self.model = tabular.TabularModel.from_environment(model_dir)
        self.suffix = ".arrow" if parquet else ".txt"
        self._write = tabular.write_arrow if parquet else tabular.write_text

    def score(self, files: list[str]) -> Scored:
        tables = [self.model.predict(path) for path in files]
        return Scored(len(files), sum(t.num_rows for t in tables), functools.partial(self._write, tables))


def load() -> Driver:
    entry = os.environ.get("AZUREML_ENTRY_SCRIPT")
    model_dir = os.environ.get("AZUREML_MODEL_DIR")
    if entry:
        return ScriptDriver(Path(os.environ.get("AML_APP_ROOT", ".")), entry)
    if model_dir and os.environ.get("MLFLOW_MODEL_FOLDER") is not None:
        return MlflowDriver()
    if model_dir:
        parquet = os.environ.get("AZUREML_BATCH_OUTPUT_FILE_NAME", "").lower().endswith(".parquet")
        return OnnxDriver(Path(model_dir), parquet)
    raise RuntimeError("neither AZUREML_ENTRY_SCRIPT nor AZUREML_MODEL_DIR is set: nothing to score with")


def _setting(name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = os.environ.get(name, default).lower()
    if value not in allowed:
        raise ValueError(f"{name}={os.environ[name]!r}: use one of {', '.join(allowed)}")
    return value


def _requests() -> IO[str]:
    """The daemon's requests, moved off fd 0 (now /dev/null): neither the script nor a program it starts can
    read them away."""
    fd = os.dup(0)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    return os.fdopen(fd, "r", encoding="utf-8")


def _write_part(target: str, write: Callable[[IO[bytes]], object]) -> str:
    """`target`, written under a hidden temporary name in its folder, then renamed into place."""
    folder, name = os.path.split(target)
    temporary = os.path.join(folder, f".{name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as sink:
            write(sink)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return target


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m appliance.scoring.batch")
    parser.add_argument("--reply-fd", type=int, required=True, help="File descriptor the replies are written to")
    parser.add_argument("--parent-pid", type=int, help="End with this process (the daemon that starts the worker)")
    args = parser.parse_args(argv)
    if args.parent_pid and not die_with_parent(args.parent_pid):
        print(f"the daemon that started this worker (pid {args.parent_pid}) is gone", file=sys.stderr)
        return 1
    os.set_inheritable(args.reply_fd, False)  # the script's own subprocesses don't hold the pipe open
    replies = os.fdopen(args.reply_fd, "w", buffering=1, encoding="utf-8")

    def reply(message: dict[str, Any]) -> None:
        replies.write(json.dumps(message) + "\n")

    requests = _requests()
    started = time.perf_counter()
    try:
        level = _setting("AZUREML_LOG_LEVEL", "info", LEVELS)
        append = _setting("AZUREML_BATCH_OUTPUT_ACTION", "append_row", ACTIONS) == "append_row"
        logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        driver = load()
    except BaseException:  # SystemExit from a script's init() included: the daemon hears why
        reply({"ready": False, "error": traceback.format_exc()})
        return 1
    reply({"ready": True, "driver": driver.name, "init_ms": _ms(started)})
    for line in requests:
        request = json.loads(line)
        started = time.perf_counter()
        try:
            scored = driver.score(request["files"])
            part = _write_part(request["part"] + driver.suffix, scored.write) if append else None
        except Exception:
            reply({"idx": request["idx"], "ok": False, "error": traceback.format_exc()})
            continue
        reply({"idx": request["idx"], "ok": True, "items": scored.items, "rows": scored.rows if append else 0,
               "part": part, "ms": _ms(started)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
