"""`python -m appliance.scoring`: one worker, serving one model on a Unix socket or a TCP port.

Configured as Azure configures its inference server, through the environment:
AZUREML_MODEL_DIR (the model folder), plus APPLIANCE_MODEL_NAME / APPLIANCE_MODEL_VERSION.
The model is loaded before the socket is bound, so a worker that answers `GET /` is ready.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m appliance.scoring")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--socket", help="Unix socket path to serve on")
    where.add_argument("--port", type=int, help="TCP port to serve on")
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)

    import uvicorn

    from appliance.scoring.app import Worker
    from appliance.scoring.onnx_model import OnnxModel, find_onnx_file

    model_dir = os.environ.get("AZUREML_MODEL_DIR")
    if not model_dir:
        print("AZUREML_MODEL_DIR is not set: no model to serve", file=sys.stderr)
        return 2
    try:
        model = OnnxModel(find_onnx_file(Path(model_dir)))
    except Exception as exc:
        print(f"cannot load the model: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 3  # azmlinfsrv's exit code for a failed init
    name = os.environ.get("APPLIANCE_MODEL_NAME", "model")
    version = os.environ.get("APPLIANCE_MODEL_VERSION", "1")
    print(f"model {name}:{version} loaded from {model.path} on {model.provider}", file=sys.stderr, flush=True)
    config = uvicorn.Config(Worker(model, name, version), uds=args.socket, port=args.port or 0, host=args.host,
                            lifespan="off", access_log=False, log_level="warning", http="httptools",
                            loop="uvloop")
    uvicorn.Server(config).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
