"""A no-code ONNX model: one onnxruntime session, and the conversion of JSON requests into its
inputs (dtypes and shapes from the model's own signature) with errors a user can act on."""

from __future__ import annotations

import importlib
import os
import time
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance.scoring import providers


class _Lazy:
    """A module imported when first used. A scoring script's worker imports this module too, but its
    venv holds numpy and onnxruntime only if its environment asks for them (as on Azure)."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        value = getattr(importlib.import_module(self._name), attr)
        setattr(self, attr, value)  # next time a plain attribute: no cost on the hot path
        return value


if TYPE_CHECKING:
    import numpy as np
    import onnxruntime as ort
    from onnxruntime.capi import _pybind_state
else:
    np, ort, _pybind_state = _Lazy("numpy"), _Lazy("onnxruntime"), _Lazy("onnxruntime.capi._pybind_state")

# ONNX tensor types → numpy dtypes (by name) and Open Inference Protocol datatypes.
DTYPES: dict[str, tuple[str, str]] = {
    "tensor(float)": ("float32", "FP32"),
    "tensor(double)": ("float64", "FP64"),
    "tensor(float16)": ("float16", "FP16"),
    "tensor(int64)": ("int64", "INT64"),
    "tensor(int32)": ("int32", "INT32"),
    "tensor(int16)": ("int16", "INT16"),
    "tensor(int8)": ("int8", "INT8"),
    "tensor(uint8)": ("uint8", "UINT8"),
    "tensor(uint16)": ("uint16", "UINT16"),
    "tensor(bool)": ("bool_", "BOOL"),
    "tensor(string)": ("object_", "BYTES"),
}


WARM_RERUN = 0.05  # s: a warm-up run this slow is timed as it is, not run again


class BadInput(ValueError):
    """A request the model cannot take; the message names the input and what it expects."""


@dataclass(frozen=True)
class TensorSig:
    name: str
    type: str  # ONNX type string, e.g. tensor(float) or seq(map(int64,tensor(float)))
    shape: list[int | str | None]
    dtype: Any = field(init=False, repr=False)  # numpy's, None for types JSON can't carry
    _fixed: Any = field(init=False, repr=False)  # picks the fixed dimensions out of a shape, or None
    _sizes: Any = field(init=False, repr=False)  # what it picks out of this shape

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", getattr(np, DTYPES[self.type][0]) if self.type in DTYPES else None)
        axes = [axis for axis, n in enumerate(self.shape) if isinstance(n, int)]
        fixed = itemgetter(*axes) if axes else None
        object.__setattr__(self, "_fixed", fixed)
        object.__setattr__(self, "_sizes", fixed(self.shape) if fixed else None)

    def fits(self, shape: tuple[int, ...]) -> bool:
        """Same rank, and every fixed dimension the same (once a request, so no loop in Python)."""
        return len(shape) == len(self.shape) and (self._fixed is None or self._fixed(shape) == self._sizes)

    @property
    def datatype(self) -> str:
        return DTYPES[self.type][1] if self.type in DTYPES else "BYTES"

    def describe(self) -> str:
        dims = ", ".join("?" if not isinstance(d, int) else str(d) for d in self.shape)
        return f"{self.type} of shape [{dims}]"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "datatype": self.datatype,
                "shape": [d if isinstance(d, int) else -1 for d in self.shape]}


def find_onnx_file(model_dir: Path) -> Path:
    """The one .onnx file of a model (a file, or a folder holding exactly one). A file of any other
    kind (a pickle, a checkpoint) is never taken for ONNX: only its name says what it is."""
    if model_dir.is_dir():
        found = sorted(p for p in model_dir.rglob("*") if p.suffix.lower() == ".onnx" and p.is_file())
    else:
        found = [model_dir] if model_dir.suffix.lower() == ".onnx" else []
    if not found:
        raise FileNotFoundError(f"no .onnx file under {model_dir}")
    if len(found) > 1:
        names = ", ".join(str(p.relative_to(model_dir)) for p in found)
        raise FileNotFoundError(f"several .onnx files under {model_dir} ({names}): "
                                "register one, or add a score.py that chooses")
    return found[0]


def triton_name(model_dir: Path) -> tuple[str, str] | None:
    """(model, version) a Triton model repository serves its one ONNX model under: its folder names
    (`models/model_1/1/model.onnx` → model_1, 1), as Triton's V2 routes name it; None if not laid out so."""
    try:
        parts = find_onnx_file(model_dir).relative_to(model_dir).parts
    except (FileNotFoundError, ValueError):
        return None
    if len(parts) >= 3 and parts[-2].isdigit():
        return parts[-3], parts[-2]
    return None


def session_options() -> ort.SessionOptions:
    opts = ort.SessionOptions()
    # Few threads per session and no spinning: many small concurrent requests on shared cores.
    opts.intra_op_num_threads = int(os.environ.get("OMP_NUM_THREADS", "1"))
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return opts


class OnnxModel:
    def __init__(self, path: Path, provider_choice: str | None = None) -> None:
        ort.set_default_logger_severity(3)
        self.path = path
        wanted = providers.choose(ort.get_available_providers(), provider_choice)
        self.session = ort.InferenceSession(str(path), session_options(), providers=wanted)
        self.inputs = [TensorSig(i.name, i.type, list(i.shape)) for i in self.session.get_inputs()]
        self.outputs = [TensorSig(o.name, o.type, list(o.shape)) for o in self.session.get_outputs()]
        self._input_by_name = {i.name: i for i in self.inputs}
        self._output_names = [o.name for o in self.outputs]
        self._output_by_name = {o.name: o for o in self.outputs}
        # Reused: without one, every call builds a default RunOptions, about a seventh of a small model's
        # call (measured 1.0 µs of 7.4, onnxruntime 1.31). Run only reads it, so threads may share it.
        self._run_options = ort.RunOptions()

    @property
    def provider(self) -> str:
        return self.session.get_providers()[0]

    def signature(self) -> dict[str, Any]:
        return {"inputs": [i.to_json() for i in self.inputs], "outputs": [o.to_json() for o in self.outputs]}

    def warm_up(self) -> float | None:
        """A run on zeros (free dimensions as 1), so the first request doesn't pay onnxruntime's
        first-run setup; then the CPU seconds a small request's run costs: those of a second run, or of
        the first for a model slower than `WARM_RERUN` (twice its time would only delay its start).
        None for a model that refuses zeros: it is simply not warmed."""
        if any(i.dtype is None for i in self.inputs):
            return None
        feeds = {i.name: np.zeros([d if isinstance(d, int) else 1 for d in i.shape], dtype=i.dtype)
                 for i in self.inputs}
        try:
            started = time.thread_time()
            self.run(feeds)
            cost = time.thread_time() - started
            if cost < WARM_RERUN:
                started = time.thread_time()
                self.run(feeds)
                cost = time.thread_time() - started
        except Exception:  # best effort
            return None
        return cost

    def run(self, feeds: dict[str, np.ndarray], names: list[str] | None = None) -> list[Any]:
        """`InferenceSession.run` without its checks of every call, which cost about as much as a
        small model's whole run: these feeds were checked against the signature already. The
        binding is looked up each time, as the wrapper replaces it when it falls back to another
        execution provider; a provider's failure goes through the wrapper, for that fallback."""
        try:
            return self.session._sess.run(names or self._output_names, feeds, self._run_options)
        except _pybind_state.EPFail:
            return self.session.run(names, feeds, self._run_options)

    # -- Azure-style JSON ------------------------------------------------------------------

    def named_values(self, payload: Any) -> dict[str, Any]:
        """`{"data": x}`, `{"input_data": x}` (also pandas split), `{"inputs": {name: x}}`, or a
        bare array → {input name: value}."""
        value: Any = payload
        if isinstance(payload, dict):
            if "inputs" in payload:
                value = payload["inputs"]
            elif "input_data" in payload:
                value = payload["input_data"]
                if isinstance(value, dict) and "data" in value and "columns" in value:
                    value = value["data"]  # pandas "split" orientation
            elif "data" in payload:
                value = payload["data"]
            elif not payload.keys() <= self._input_by_name.keys() or not payload:
                raise BadInput('send {"data": [[...]]}, {"input_data": ...} or '
                               '{"inputs": {"<input name>": ...}}; this model takes inputs: '
                               + ", ".join(f"{i.name} ({i.describe()})" for i in self.inputs))
        if isinstance(value, dict):
            unknown = sorted(value.keys() - self._input_by_name.keys())
            if unknown:
                raise BadInput(f"unknown input(s) {', '.join(map(repr, unknown))}; this model takes: "
                               + ", ".join(f"{i.name} ({i.describe()})" for i in self.inputs))
            return value
        if len(self.inputs) != 1:
            raise BadInput(f"this model takes {len(self.inputs)} inputs "
                           f"({', '.join(i.name for i in self.inputs)}): send "
                           '{"inputs": {"<input name>": ...}} with each of them')
        return {self.inputs[0].name: value}

    def feeds(self, values: dict[str, Any]) -> dict[str, np.ndarray]:
        """Every input's tensor, from `values` (whose names are all the model's: unknown ones were
        refused already). Loops, not comprehensions: this runs once a request, where a
        comprehension's function call costs as much as checking the whole input."""
        if len(values) != len(self.inputs):
            missing = [i.name for i in self.inputs if i.name not in values]
            raise BadInput(f"missing input(s) {', '.join(map(repr, missing))}")
        by_name, tensor, feeds = self._input_by_name, self.tensor, {}
        for name, value in values.items():
            feeds[name] = tensor(by_name[name], value)
        return feeds

    @staticmethod
    def tensor(sig: TensorSig, value: Any) -> np.ndarray:
        if sig.dtype is None:
            raise _refuse(sig, f"a value, but this model input ({sig.type}) can't be sent as JSON")
        try:
            arr = np.asarray(value, dtype=sig.dtype) if sig.dtype is not np.object_ \
                else np.asarray(value, dtype=str).astype(object)
        except (ValueError, TypeError, OverflowError):  # OverflowError: an integer past what the dtype holds
            raise _refuse(sig, _describe(value)) from None
        if not sig.fits(arr.shape):
            raise _refuse(sig, _describe(value))
        return arr

    def predict(self, payload: Any) -> Any:
        """Azure-style: one output → its values; several → {output name: values}."""
        return self.answer(self.run(self.feeds(self.named_values(payload))))

    def answer(self, results: list[Any]) -> Any:
        """The results of `run` as `predict` answers them."""
        if len(results) == 1:
            return _plain(results[0])
        named = {}
        for output, result in zip(self.outputs, results, strict=True):
            named[output.name] = _plain(result)
        return named

    # -- Open Inference Protocol -----------------------------------------------------------

    def infer_v2(self, request: dict[str, Any], binary: bytes = b"") -> list[dict[str, Any]]:
        """Named tensors in, named tensors out; `binary` holds the tensors that Triton's binary data
        extension sends after the JSON (`parameters.binary_data_size`), in input order. Every field is
        checked as the protocol has it before numpy sees it: what's wrong is a BadInput naming it."""
        values = self.v2_inputs(request, binary)
        wanted = self.v2_outputs(request)
        results = self.run(self.feeds(values), wanted)
        out = []
        for name, r in zip(wanted, results, strict=True):
            arr = np.asarray(r)
            out.append({"name": name, "datatype": self._output_by_name[name].datatype, "shape": list(arr.shape),
                        "data": arr.ravel().tolist()})
        return out

    def v2_inputs(self, request: dict[str, Any], binary: bytes = b"") -> dict[str, np.ndarray]:
        """{input name: array} from a V2 request's `inputs` (and its binary tail)."""
        tensors = request.get("inputs")
        if not isinstance(tensors, list):
            raise BadInput('"inputs" must be a list of tensors {"name", "shape", "datatype", "data"}')
        _parameters(request, "the request")
        values: dict[str, np.ndarray] = {}
        for t in tensors:
            if not isinstance(t, dict) or not isinstance(name := t.get("name"), str):
                raise BadInput('each input tensor is an object with "name" (a string), "shape", "datatype" '
                               'and "data"; got ' + _show(t))
            sig = self._input_by_name.get(name)
            if sig is None:
                raise BadInput(f"unknown input {_clip(name)!r}; this model takes: "
                               + ", ".join(i.name for i in self.inputs))
            if name in values:
                raise BadInput(f"input {name!r} is given twice")
            shape = t.get("shape")
            if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
                raise BadInput(f'input {name!r}: "shape" must be a list of non-negative integers; got '
                               + _show(shape))
            datatype = t.get("datatype")
            if datatype != sig.datatype:
                raise BadInput(f'input {name!r}: "datatype" must be {sig.datatype!r}; got ' + _show(datatype))
            size = _parameters(t, f"input {name!r}").get("binary_data_size")
            try:
                if size is not None:
                    if type(size) is not int or size < 0:
                        raise BadInput(f"input {name!r}: binary_data_size must be a non-negative integer; got "
                                       + _show(size))
                    if sig.dtype is np.object_:
                        raise BadInput(f"input {name!r}: send BYTES tensors as JSON data")
                    if size > len(binary):
                        raise BadInput(f"input {name!r}: binary_data_size is {size}, but only {len(binary)} "
                                       "bytes follow the JSON (inference-header-content-length)")
                    chunk, binary = binary[:size], binary[size:]
                    values[name] = np.frombuffer(chunk, dtype=sig.dtype).reshape(shape)
                elif "data" not in t:
                    raise BadInput(f'input {name!r} needs "data" (or parameters.binary_data_size)')
                elif sig.dtype is np.object_:
                    values[name] = np.asarray(t["data"], dtype=str).astype(object).reshape(shape)
                else:
                    values[name] = np.asarray(t["data"], dtype=sig.dtype).reshape(shape)
            except (ValueError, TypeError, OverflowError) as exc:
                if isinstance(exc, BadInput):
                    raise
                raise BadInput(f"input {name!r}: data does not fit shape {_clip(str(shape))} "
                               f"as {sig.datatype}") from None
        return values

    def v2_outputs(self, request: dict[str, Any]) -> list[str]:
        """The names of the outputs a V2 request asks for (`outputs`), or all of them."""
        outputs = request.get("outputs")
        if outputs is None:
            return self._output_names
        if not isinstance(outputs, list):
            raise BadInput('"outputs" must be a list of {"name": ...}; got ' + _show(outputs))
        wanted = []
        for o in outputs:
            if not isinstance(o, dict) or not isinstance(name := o.get("name"), str):
                raise BadInput('each requested output is an object with "name" (a string); got ' + _show(o))
            if name not in self._output_by_name:
                raise BadInput(f"unknown output {_clip(name)!r}; this model has: {', '.join(self._output_names)}")
            _parameters(o, f"output {name!r}")
            wanted.append(name)
        return wanted or self._output_names


def _parameters(holder: dict[str, Any], what: str) -> dict[str, Any]:
    parameters = holder.get("parameters")
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise BadInput(f'{what}: "parameters" must be an object; got ' + _show(parameters))
    return parameters


def _clip(text: str) -> str:
    return text if len(text) <= 64 else text[:64] + "..."


def _show(value: Any) -> str:
    """A value from a request, for a message: its JSON type, and itself if a short scalar."""
    if isinstance(value, dict | list):
        return f"{'an object' if isinstance(value, dict) else 'a list'} of {len(value)}"
    if value is None:
        return "null"
    kind = {str: "a string", bool: "a boolean", int: "a number", float: "a number"}.get(type(value), "a value")
    try:
        text = repr(value)
    except ValueError:  # an integer of more digits than Python converts
        return kind
    return f"{kind} {text}" if len(text) <= 64 else kind


def _plain(result: Any) -> Any:
    """An output as JSON can carry it (a sequence or map output is a list or dict already)."""
    return result.tolist() if isinstance(result, np.ndarray) else result


def _refuse(sig: TensorSig, got: str) -> BadInput:
    return BadInput(f"input {sig.name!r} expects {sig.describe()}; got {got}")


def _describe(value: Any) -> str:
    """'shape [2, 3] of int' style description of what arrived in a request."""
    shape: list[int] = []
    probe = value
    while isinstance(probe, list):
        shape.append(len(probe))
        if not probe:
            break
        probe = probe[0]
    kind = type(probe).__name__ if not isinstance(probe, list) else "nothing"
    rows = value if isinstance(value, list) else []
    lengths = {len(r) if isinstance(r, list) else -1 for r in rows}
    ragged = " (rows of different lengths)" if len(lengths) > 1 else ""
    return f"shape [{', '.join(map(str, shape))}] of {kind}{ragged}"
