"""Scenario (e), the practical floor: one process, uvicorn + httptools + uvloop, a raw ASGI callable
that decodes the JSON body, runs onnxruntime and encodes the answer. No routing, no validation, no
logging: what any Python server of an ONNX model costs at least on this machine.

    python tests/benchmarks/floor_app.py --port 8000 --model path/to/model.onnx
"""

from __future__ import annotations

import argparse
from typing import Any

import msgspec
import numpy as np
import onnxruntime as ort
import uvicorn


def make_app(model: str) -> Any:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    output_names = [o.name for o in session.get_outputs()]
    encode, decode = msgspec.json.encode, msgspec.json.decode
    headers = [(b"content-type", b"application/json")]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if scope["method"] == "POST":
            data = np.asarray(decode(body)["data"], dtype=np.float32)
            results = session.run(None, {input_name: data})
            payload = encode({n: r.tolist() for n, r in zip(output_names, results, strict=True)})
        else:
            payload = b'"Healthy"'
        await send({"type": "http.response.start", "status": 200,
                    "headers": [*headers, (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--model", required=True)
    args = parser.parse_args()
    uvicorn.run(make_app(args.model), host=args.host, port=args.port, http="httptools", loop="uvloop",
                lifespan="off", access_log=False, log_level="warning")


if __name__ == "__main__":
    main()
