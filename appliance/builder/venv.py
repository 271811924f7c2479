"""Environment → venv, for the process runtime: built once per content hash under
`$APPLIANCE_HOME/envs/<digest>/`, shared by every deployment with the same requirements, reused
after a restart.

A venv holds the environment's own packages and, pinned to the versions this daemon runs, only what
the worker needs to serve (as an Azure environment holds azureml-inference-server-http and what it
needs): a score.py importing what its conda file lacks fails with ModuleNotFoundError, as on Azure.
The worker's own code is not installed there: each daemon puts its `appliance` package (and nothing
else of its own) on the worker's path at launch (`worker_path`), so it runs its own scoring code
whichever checkout built the venv."""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import venv
from pathlib import Path

import appliance
from appliance.builder.run import BuildError, Say, host_environment, run
from appliance.specs import EnvironmentSpec

_SKIP = {"python", "pip", "setuptools", "wheel"}
_CONDA_PIN = re.compile(r"^([A-Za-z0-9_.\-]+)\s*=\s*([^=<>!~\s]+)$")  # numpy=1.26 (conda's "1.26.*")
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_LOCKS: dict[Path, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()
LAYOUT = 2  # of a venv: 2 = no fallback to the daemon's site-packages (1 had one, in a .pth file)

# What `python -m appliance.scoring` imports to serve (checked with `python -X importtime`), as the
# distributions that provide it: its HTTP parser and event loop (httptools, uvloop) and JSON codec;
# for a scoring script, what Azure's inference server brings into every environment it serves (Flask
# behind @rawhttp's AMLRequest/AMLResponse, inference-schema for @input_schema), imported only by the
# scripts that use them; for a no-code ONNX model, numpy and onnxruntime (whichever build this daemon
# runs: onnxruntime-gpu is large, so a script's venv has it only if its environment lists it).
SERVER = ("httptools", "uvloop", "msgspec")
SCRIPT = ("flask", "inference-schema")
ONNX = ("numpy", "onnxruntime")


FROZEN = bool(getattr(sys, "frozen", False))  # the one-file build (scripts/build-onefile.sh)
PYTHONS = ("python3", "python3.13", "python3.12", "python3.11")
_PROBE = "import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))"


@functools.cache
def base_python() -> str:
    """The Python an environment's venv is made from: the daemon's own, or, in the one-file build
    (whose Python can't make venvs), the first Python 3.11+ with venv found on PATH."""
    if not FROZEN:
        return sys.executable
    seen = []
    for name in PYTHONS:
        found = shutil.which(name)
        if not found or found in seen:
            continue
        seen.append(found)
        probe = subprocess.run([found, "-c", _PROBE], capture_output=True, env=host_environment())
        if probe.returncode == 0:
            return found
    what = (f"only {', '.join(seen)}, without Python 3.11+ and its venv module (Debian: python3-venv)" if seen
            else f"no python3 on PATH (looked for {', '.join(PYTHONS)})")
    raise BuildError(f"this deployment needs a Python on this machine and there is none: {what}. The one-file "
                     "appliance runs a scoring script (score.py) or an environment's packages in a venv made by "
                     "the machine's Python 3.11 or newer; install one (Debian/Ubuntu: apt-get install python3 "
                     "python3-venv) and apply again, or use runtime: docker. No-code ONNX deployments need none.")


@functools.cache
def _version(python: str) -> list[int]:
    if python == sys.executable:
        return list(sys.version_info[:2])
    out = subprocess.run([python, "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True,
                         text=True, check=True, env=host_environment()).stdout
    return [int(x) for x in out.split()]


# numpy 2 changed numpy's C ABI: a wheel built against numpy 1.x fails to import under numpy 2 ("numpy.dtype size
# changed", "compiled using NumPy 1.x cannot be run in NumPy 2"). Per package, its first release built against
# numpy 2 (from each project's release notes); an environment allowing only older releases gets numpy<2, as
# conda's solver gives it (its packages declare numpy<2), unless the environment bounds numpy itself.
NUMPY_2_SINCE = {
    "scikit-learn": "1.4.2", "pandas": "2.2.2", "scipy": "1.13.0", "pyarrow": "16.0.0", "matplotlib": "3.8.4",
    "onnxruntime": "1.19.0", "onnxruntime-gpu": "1.19.0", "torch": "2.3.0", "tensorflow": "2.18.0",
    "numba": "0.60.0", "statsmodels": "0.14.2", "opencv-python": "4.10.0.84", "opencv-python-headless": "4.10.0.84",
}


def numpy_bound(reqs: list[str]) -> tuple[list[str], str | None]:
    """`reqs` with numpy<2 when one of them allows only releases built against numpy 1.x (NUMPY_2_SINCE) and
    numpy is unpinned (absent, or named without a version), and why; else `reqs` as they are, and None."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.version import InvalidVersion, Version

    parsed: list[Requirement | None] = []
    for r in reqs:
        try:
            parsed.append(Requirement(r))
        except InvalidRequirement:
            parsed.append(None)
    if any(q is not None and canonical(q.name) == "numpy" and q.specifier for q in parsed):
        return reqs, None  # the environment bounds numpy itself: its choice
    why = []
    for q in parsed:
        since = NUMPY_2_SINCE.get(canonical(q.name)) if q is not None else None
        if q is None or since is None or not q.specifier:
            continue
        candidates = {since, "99999"} | {s.version.removesuffix(".*") for s in q.specifier}
        try:
            newer = [v for v in candidates if Version(v) >= Version(since) and q.specifier.contains(v, True)]
        except InvalidVersion:
            continue
        if not newer:
            why.append(f"{q} (numpy 2 wheels since {q.name} {since})")
    if not why:
        return reqs, None
    bounded = [r if q is None or canonical(q.name) != "numpy" else f"numpy<2{';' + str(q.marker) if q.marker else ''}"
               for r, q in zip(reqs, parsed, strict=True)]
    if "numpy<2" not in bounded:
        bounded.append("numpy<2")
    return bounded, (f"numpy<2 added: {', '.join(why)} allow(s) only releases built against numpy 1.x, which fail "
                     "to import under numpy 2 (conda's solver picks numpy<2 for them too); pin numpy to choose")


def conda_requirements(spec: EnvironmentSpec) -> list[str]:
    """pip requirements from a conda file: its `pip:` list, and its plain dependencies in pip's
    spelling (channels dropped, `name=1.2` as `name==1.2.*`), python and pip themselves aside."""
    conda = spec.conda_file if isinstance(spec.conda_file, dict) else {}
    found: list[str] = []
    for dep in conda.get("dependencies") or []:
        if isinstance(dep, dict):
            found += [str(r) for r in dep.get("pip") or []]
            continue
        name = str(dep).split("::")[-1].strip()
        base = re.split(r"[=<>!~ ]", name, maxsplit=1)[0].lower()
        if base in _SKIP:
            continue
        pin = _CONDA_PIN.match(name)
        found.append(f"{pin.group(1)}=={pin.group(2)}{'' if pin.group(2).endswith('*') else '.*'}" if pin else name)
    return found


def requirements(spec: EnvironmentSpec) -> list[str]:
    """What pip installs for an environment: its conda file's requirements (`conda_requirements`), with the
    binary-compatibility bounds conda's solver would apply (`numpy_bound`)."""
    return numpy_bound(conda_requirements(spec))[0]


_PYTHON_PIN = re.compile(r"^python\s*(?:==?|~=)?\s*(3\.\d+)(?:\.[\d*]+)*$")


def python_pin(spec: EnvironmentSpec) -> str | None:
    """`3.10` for a conda file's `python=3.10` (or `python=3.10.4`, `python==3.10.*`), else None."""
    conda = spec.conda_file if isinstance(spec.conda_file, dict) else {}
    for dep in conda.get("dependencies") or []:
        if isinstance(dep, str) and (m := _PYTHON_PIN.match(dep.split("::")[-1].strip())):
            return m.group(1)
    return None


MIN_WORKER = (3, 11)  # the worker (appliance.scoring, put on the venv's path) runs on Python 3.11+


def choose_python(want: str | None, found: list[tuple[tuple[int, ...], str]],
                  own: tuple[int, ...]) -> tuple[str | None, str | None]:
    """(interpreter, note) for a `python=` pin: the first of `found` ((version, path), as discovered) with the
    pinned major.minor, or None (the appliance's own Python, at `own`) and a note saying which one is used."""
    if want is None:
        return None, None
    major_minor = tuple(int(x) for x in want.split("."))
    used = ".".join(map(str, own[:3]))
    if major_minor == tuple(own[:2]):
        return None, None
    if major_minor < MIN_WORKER:
        return None, (f"python={want} pinned: the worker needs Python {'.'.join(map(str, MIN_WORKER))}+, so this "
                      f"environment runs on Python {used}; packages pinned for {want} may have no wheels for it")
    for version, path in found:
        if tuple(version[:2]) == major_minor:
            return path, None
    return None, (f"python={want} pinned, but no Python {want} is installed here (looked with `uv python find`, "
                  f"pyenv and python{want} on PATH): this environment runs on Python {used}")


@functools.cache
def find_pythons(want: str) -> tuple[tuple[tuple[int, ...], str], ...]:
    """Interpreters of major.minor `want` on this machine: uv's (`uv python find`), pyenv's, python3.X on PATH."""
    paths: list[str] = []
    uv = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    pyenv = shutil.which("pyenv") or str(Path.home() / ".pyenv" / "bin" / "pyenv")
    for command in ([uv, "python", "find", "--system", want], [pyenv, "prefix", want]):
        if not Path(command[0]).is_file():
            continue
        try:
            out = subprocess.run(command, capture_output=True, text=True, timeout=20, env=host_environment())
        except (OSError, subprocess.TimeoutExpired):
            continue
        for line in out.stdout.split() if out.returncode == 0 else []:
            paths.append(f"{line}/bin/python" if command[0] == pyenv else line)
    if on_path := shutil.which(f"python{want}"):
        paths.append(on_path)
    found: list[tuple[tuple[int, ...], str]] = []
    for path in dict.fromkeys(paths):
        try:
            out = subprocess.run([path, "-c", "import sys; print(*sys.version_info[:3])"], capture_output=True,
                                 text=True, timeout=20, env=host_environment())
            found.append((tuple(int(x) for x in out.stdout.split()), path))
        except (OSError, ValueError, subprocess.TimeoutExpired):
            continue
    return tuple(found)


def interpreter(spec: EnvironmentSpec) -> tuple[str | None, str | None]:
    """(the interpreter for this environment's venv, None = the appliance's; a note if its pin isn't honoured)."""
    want = python_pin(spec)
    own = tuple(_version(base_python())) if FROZEN else tuple(sys.version_info[:3])
    if want is None:
        return None, None
    return choose_python(want, list(find_pythons(want)), own)


def notes(spec: EnvironmentSpec) -> list[str]:
    """What of a conda file isn't done here as conda would do it, said once at apply and in the build log."""
    conda = spec.conda_file if isinstance(spec.conda_file, dict) else {}
    said = []
    if channels := conda.get("channels"):
        said.append(f"conda channels {', '.join(map(str, channels))}: not used here (a venv's packages come from "
                    "pip's index, PyPI or pip's own configuration)")
    if note := interpreter(spec)[1]:
        said.append(note)
    if note := numpy_bound(conda_requirements(spec))[1]:
        said.append(note)
    return said


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def named(reqs: list[str]) -> set[str]:
    """The distributions a list of pip requirements names (not its options, paths or bare URLs)."""
    found = {canonical(m.group(1)) for r in reqs if not r.lstrip().startswith(("-", ".", "/"))
             and "://" not in r.split("@")[0] and (m := _NAME.match(r))}
    if any(n.startswith("onnxruntime") for n in found):  # any build of it: they share one import name
        found.add("onnxruntime")
    return found


@functools.cache
def _provider(module: str) -> str:
    """The distribution that provides an import name here (onnxruntime → onnxruntime-gpu)."""
    return (importlib.metadata.packages_distributions().get(module) or [module])[0]


def worker_pins(reqs: list[str], onnx: bool = False, mlflow: bool = False) -> list[str]:
    """`name==version` for what the worker needs (SERVER, and SCRIPT or ONNX), each at the version this
    daemon runs, with what it requires in turn (markers as they evaluate here: the venv has this Python).
    What `reqs` names is left to them (the environment's own pins win), and so is what it requires."""
    from packaging.requirements import Requirement

    own = named(reqs)
    extra = ONNX if onnx else () if mlflow else SCRIPT  # a no-code MLflow model's own packages serve it
    todo = [(canonical(n), frozenset[str]()) for n in (*SERVER, *extra)]
    pins: dict[str, str] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, extras = todo.pop()
        if name in own or (name, extras) in seen:
            continue
        seen.add((name, extras))
        if name == "onnxruntime":
            name = canonical(_provider("onnxruntime"))
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:  # not here: unpinned (pip's newest)
            pins.setdefault(name, name)
            continue
        pins[name] = f"{dist.metadata['Name']}=={dist.version}"
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in (*extras, "")):
                todo.append((canonical(req.name), frozenset(req.extras)))
    return sorted(pins.values(), key=str.lower)


def digest(reqs: list[str], pins: list[str] | None = None, interpreter: str | None = None) -> str:
    """A venv's name: the Python, the environment's requirements, and the worker's pins beside them."""
    python = _version(interpreter) if interpreter else _version(base_python()) if FROZEN else list(sys.version_info[:2])
    identity = {"python": python, "requirements": reqs, "worker": pins or [], "layout": LAYOUT}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def worker_path(folder: Path) -> Path:
    """`folder`, holding this daemon's `appliance` package (a symbolic link) and nothing else: what a
    worker in an environment's venv gets on its PYTHONPATH, so that it runs this daemon's scoring code
    without seeing the daemon's other packages (its site-packages may hold the appliance too)."""
    package = Path(appliance.__file__).resolve().parent
    link = folder / "appliance"
    if link.is_symlink() and link.resolve() == package:
        return folder
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    staging = folder / f".appliance.{os.getpid()}"
    staging.unlink(missing_ok=True)
    staging.symlink_to(package, target_is_directory=True)
    os.replace(staging, link)
    return folder


def _lock(path: Path) -> threading.Lock:
    """One build of `path` at a time in this daemon (deployments sharing an environment build at once)."""
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(path, threading.Lock())


def _staging(target: Path) -> Path:
    staging = target.with_name(f".{target.name}.{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    return staging


def _publish(staging: Path, target: Path, ready: dict[str, list[str]]) -> None:
    (staging / ".ready").write_text(json.dumps(ready) + "\n")
    try:
        os.rename(staging, target)
    except OSError:  # made meanwhile by another daemon on this home: theirs is as good
        shutil.rmtree(staging, ignore_errors=True)


def wheelhouse(root: Path, pins: list[str], say: Say, pip: list[str] | None = None, tag: str = "") -> Path:
    """The worker's wheels for `pins`, made once (from pip's usual sources, or its cache) under `root`,
    so that each venv installs them without asking an index (`tag`: of another Python than pip's)."""
    folder = root / ".wheels" / hashlib.sha256("\n".join(pins).encode()).hexdigest()[:16]
    folder = folder.with_name(f"{folder.name}-{tag}") if tag else folder
    with _lock(folder):
        if (folder / ".ready").exists():
            return folder
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = _staging(folder)
        say(f"fetching the worker's packages (once): {' '.join(pins)}")
        try:
            run([*(pip or [sys.executable, "-m", "pip"]), "wheel", "--disable-pip-version-check", "--no-input",
                 "--progress-bar", "off", "--no-deps", "--wheel-dir", str(staging), *pins], say,
                "fetching the worker's packages")
        except BuildError:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        _publish(staging, folder, {"worker": pins})
    return folder


def ensure(root: Path, reqs: list[str], say: Say, *, onnx: bool = False, mlflow: bool = False,
           interpreter: str | None = None, notes: list[str] | None = None) -> Path:
    """The python of the venv for `reqs` and the worker (for a no-code ONNX model if `onnx`, else for a
    scoring script), made from `interpreter` (None: the appliance's own Python), built now unless it already
    is (then `notes`, what of its environment isn't done as Azure would, go to the build log first)."""
    pins = worker_pins(reqs, onnx, mlflow)
    target = root / digest(reqs, pins, interpreter)  # (the pins' markers as this Python evaluates them)
    python = target / "bin" / "python"
    if (target / ".ready").exists():
        return python
    for note in notes or []:
        say(f"note: {note}")
    say(f"building environment venv {target.name[:12]}"
        + (f" with {interpreter} (Python {'.'.join(map(str, _version(interpreter)))})" if interpreter else "")
        + f": {' '.join(reqs)}")
    with _lock(target):
        if not (target / ".ready").exists():  # else built meanwhile, for another deployment
            _build(root, target, reqs, pins, say, interpreter)
    say(f"environment venv {target.name[:12]} ready")
    return python


def _build(root: Path, target: Path, reqs: list[str], pins: list[str], say: Say,
           interpreter: str | None = None) -> None:
    root.mkdir(parents=True, exist_ok=True)
    staging = _staging(target)
    try:
        if interpreter and not FROZEN:  # another Python: it makes the venv; this pip installs into it
            run([interpreter, "-m", "venv", "--without-pip", "--symlinks", str(staging)], say, "creating the venv")
            pip = [sys.executable, "-m", "pip", "--python", str(staging / "bin" / "python")]
            wheels = wheelhouse(root, pins, say, pip, tag="py" + "".join(map(str, _version(interpreter))))
            pip = [*pip, "install", "--disable-pip-version-check", "--no-input", "--progress-bar", "off"]
        elif FROZEN:  # no pip in the binary: the machine's Python makes the venv, with pip, which does the rest
            run([interpreter or base_python(), "-m", "venv", "--symlinks", str(staging)], say, "creating the venv")
            own_pip = [str(staging / "bin" / "python"), "-m", "pip"]
            wheels = wheelhouse(root, pins, say, own_pip,
                                tag="py" + "".join(map(str, _version(interpreter))) if interpreter else "")
            pip = [*own_pip, "install", "--disable-pip-version-check", "--no-input", "--progress-bar", "off"]
        else:
            wheels = wheelhouse(root, pins, say)
            venv.create(staging, with_pip=False, symlinks=True)
            pip = [sys.executable, "-m", "pip", "--python", str(staging / "bin" / "python"), "install",
                   "--disable-pip-version-check", "--no-input", "--progress-bar", "off"]
        # The worker's packages first, from their wheelhouse (no index asked); then the environment's,
        # whose needs win where they differ (pip replaces a worker package they can't live with).
        say(f"with the worker's own packages, as this daemon runs them: {' '.join(pins)}")
        run([*pip, "--no-index", "--no-deps", "--find-links", str(wheels), *pins], say,
            "installing the worker's packages")
        if reqs:  # none for a scoring script without an environment (the one-file build gives it a venv)
            run([*pip, *reqs], say, "pip install")
    except BuildError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _publish(staging, target, {"requirements": reqs, "worker": pins})
