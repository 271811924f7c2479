"""`python -m appliance.scoring`: one worker, serving one model on a Unix socket or a TCP port.

Configured as Azure configures its inference server, through the environment: AZUREML_MODEL_DIR
(the model folder), AML_APP_ROOT and AZUREML_ENTRY_SCRIPT (a score.py: served instead of the
no-code ONNX path), MLFLOW_MODEL_FOLDER (a no-code MLflow model, in its own venv),
plus APPLIANCE_MODEL_NAME / APPLIANCE_MODEL_VERSION. The model is loaded and
init() has run before the socket is bound, so a worker that answers `GET /` is ready.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import os
import signal
import sys
from pathlib import Path

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(parent: int) -> bool:
    """Linux: this process gets SIGKILL when `parent` (its daemon) dies, however it dies (`kill -9`
    too); false if the parent is gone already (it died before the signal was asked for)."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    return os.getppid() == parent


def yield_to_router() -> None:
    """Linux: SCHED_BATCH, which changes no share of the CPU, only wake-ups: an answer written to the
    router no longer preempts it, so where both share a core the worker goes on to the next request
    waiting and the router takes the answers together (measured, a score.py at 16 clients on one core:
    1.07 context switches a request instead of 1.66, +9% req/s), and a busy worker never delays the
    router's wake-ups. Threads started later (onnxruntime's) inherit it."""
    with contextlib.suppress(AttributeError, OSError):  # not Linux
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m appliance.scoring")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--socket", help="Unix socket path to serve on")
    where.add_argument("--port", type=int, help="TCP port to serve on")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--parent-pid", type=int, help="End with this process (the daemon that starts the worker)")
    args = parser.parse_args(argv)
    if args.parent_pid and not die_with_parent(args.parent_pid):
        print(f"the daemon that started this worker (pid {args.parent_pid}) is gone", file=sys.stderr)
        return 1
    yield_to_router()

    from appliance.scoring import auth, collect, server
    from appliance.scoring.app import Worker
    from appliance.scoring.onnx_model import OnnxModel, find_onnx_file
    from appliance.scoring.script import ScriptError, ScriptScorer

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    name = os.environ.get("APPLIANCE_MODEL_NAME", "model")
    version = os.environ.get("APPLIANCE_MODEL_VERSION", "1")
    model_dir = os.environ.get("AZUREML_MODEL_DIR")
    entry = os.environ.get("AZUREML_ENTRY_SCRIPT")
    try:
        keys = auth.load()
    except auth.NoKeys as exc:
        print(f"refusing to serve without keys: {exc}", file=sys.stderr)
        return 2
    try:
        if entry:
            script = ScriptScorer(Path(os.environ.get("AML_APP_ROOT", ".")), entry)
            script.init()
            worker = Worker(name, version, script=script)
            print(f"scoring script {script.path} initialised", file=sys.stderr, flush=True)
        elif model_dir and os.environ.get("MLFLOW_MODEL_FOLDER") is not None:  # no-code MLflow, as on Azure
            from appliance.scoring.mlflow_model import MlflowModel

            mlflow = MlflowModel.from_environment()
            worker = Worker(name, version, mlflow=mlflow, collection=collect.no_code(collect.process_config()))
            print(f"MLflow model {name}:{version} ({mlflow.flavor}) loaded from {mlflow.path}", file=sys.stderr,
                  flush=True)
        elif model_dir:
            from appliance.scoring import batching

            model = OnnxModel(find_onnx_file(Path(model_dir)))
            cost = model.warm_up()
            collection = collect.no_code(collect.process_config())
            batcher, said = batching.for_model(model, os.environ, collection is not None, average=cost)
            worker = Worker(name, version, model=model, collection=collection, batcher=batcher)
            print(f"model {name}:{version} loaded from {model.path} on {model.provider}", file=sys.stderr,
                  flush=True)
            if said:
                print(said, file=sys.stderr, flush=True)
        else:
            print("neither AZUREML_ENTRY_SCRIPT nor AZUREML_MODEL_DIR is set: nothing to serve", file=sys.stderr)
            return 2
    except ScriptError as exc:
        print(exc, file=sys.stderr)
        return 3  # azmlinfsrv's exit code for a failed init
    except Exception as exc:
        print(f"cannot load the model: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 3
    if keys is not None:
        worker.keys = keys
        print(f"key auth on: {len(keys)} key(s)", file=sys.stderr, flush=True)
    # What init() made (the model, its libraries) lives as long as the worker: out of the collector's
    # sight, a full collection no longer walks it (as the daemon does with its own, daemon/server.py).
    gc.freeze()
    server.serve(worker, socket_path=args.socket, host=args.host, port=args.port or 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
