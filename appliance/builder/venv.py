"""Environment → venv, for the process runtime: built once per content hash under
`$APPLIANCE_HOME/envs/<digest>/`, shared by every deployment with the same requirements, reused
after a restart. A venv sees the appliance's own packages last (a .pth file), so the worker runs
in it while the environment's own pins win."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import sysconfig
import venv
from pathlib import Path

import appliance
from appliance.builder.run import BuildError, Say, run
from appliance.specs import EnvironmentSpec

_SKIP = {"python", "pip", "setuptools", "wheel"}
_CONDA_PIN = re.compile(r"^([A-Za-z0-9_.\-]+)\s*=\s*([^=<>!~\s]+)$")  # numpy=1.26 (conda's "1.26.*")


def requirements(spec: EnvironmentSpec) -> list[str]:
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


def digest(reqs: list[str]) -> str:
    identity = {"python": list(sys.version_info[:2]), "requirements": reqs}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def _fallback_paths() -> list[str]:
    """Where the appliance and its dependencies live, for the venv to fall back on."""
    return [sysconfig.get_paths()["purelib"], str(Path(appliance.__file__).resolve().parents[1])]


def ensure(root: Path, reqs: list[str], say: Say) -> Path:
    """The python of the venv for `reqs`, built now unless it already is."""
    target = root / digest(reqs)
    python = target / "bin" / "python"
    if (target / ".ready").exists():
        return python
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".{target.name}.{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    say(f"building environment venv {target.name[:12]}: {' '.join(reqs)}")
    venv.create(staging, with_pip=False, symlinks=True)
    site = next((staging / "lib").glob("python*/site-packages"))
    (site / "zz-appliance-fallback.pth").write_text("\n".join(_fallback_paths()) + "\n")
    command = [sys.executable, "-m", "pip", "--python", str(staging / "bin" / "python"), "install",
               "--disable-pip-version-check", "--no-input", "--progress-bar", "off", *reqs]
    try:
        run(command, say, "pip install")
    except BuildError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    (staging / ".ready").write_text(json.dumps({"requirements": reqs}) + "\n")
    try:
        os.rename(staging, target)
    except OSError:  # built meanwhile by someone else: theirs is as good
        shutil.rmtree(staging, ignore_errors=True)
    say(f"environment venv {target.name[:12]} ready")
    return python
