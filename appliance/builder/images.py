"""Environment → image, through the Docker SDK: hermetic (every wheel downloaded on the host into
the build context, installed with --no-index inside: no network in the build, no TLS trouble
behind intercepting proxies), content-addressed tags, OCI labels, and a cache hit that calls no
`docker build` at all."""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import docker
import docker.errors

import appliance
from appliance.builder import dockerfile
from appliance.builder.run import BuildError, Say, run
from appliance.registry import digest_of

DEFAULT_BASE = "python:3.11-slim"
# What the worker (appliance.scoring) imports, for the image's Python.
WORKER = ["numpy>=1.26,<3", "msgspec>=0.18,<1", "httptools>=0.6", "uvloop>=0.19"]


class DockerUnavailable(RuntimeError):
    pass


def engine() -> docker.DockerClient:
    """The Docker engine, or one clear error (the process runtime never needs it)."""
    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except docker.errors.DockerException as exc:
        raise DockerUnavailable(
            f"this needs a running Docker engine, and none answered ({exc}); start one (dockerd) or set "
            "DOCKER_HOST. The process runtime works without it.") from None
    return client


@dataclass(frozen=True)
class Image:
    tag: str
    id: str
    cached: bool


def _platforms() -> list[str]:
    arch = platform.machine()
    return [f"manylinux_2_{minor}_{arch}" for minor in range(17, 37)] + [f"manylinux2014_{arch}", f"linux_{arch}"]


class Builder:
    def __init__(self, client: docker.DockerClient, cache: Path, base_image: str = DEFAULT_BASE) -> None:
        self.client = client
        self.cache = cache
        self.base_image = base_image

    def project_wheel(self, say: Say) -> Path:
        """The appliance's own wheel (the worker ships from it), built once per source digest."""
        source = Path(appliance.__file__).resolve().parents[1]
        if not (source / "pyproject.toml").exists():
            raise BuildError(f"the appliance's source is not at {source}; install it with ./install.sh")
        digest, _, _ = digest_of(source / "appliance")
        folder = self.cache / "wheels" / digest[:16]
        found = sorted(folder.glob("appliance-*.whl"))
        if found:
            return found[0]
        say("building the appliance wheel")
        run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-q", "-w",
              str(folder), str(source)], say, "building the appliance wheel")
        return sorted(folder.glob("appliance-*.whl"))[0]

    def base(self, wanted: str | None, say: Say) -> tuple[str, str]:
        """(name, id) of the base to build on: the environment's own `image` when the engine has it,
        else the configured base image (said in the build log)."""
        if wanted:
            try:
                return wanted, self.client.images.get(wanted).id
            except docker.errors.ImageNotFound:
                say(f"base image {wanted} is not on this engine (docker pull it to use it); building on "
                    f"{self.base_image}")
        try:
            return self.base_image, self.client.images.get(self.base_image).id
        except docker.errors.ImageNotFound:
            raise BuildError(f"base image {self.base_image!r} is not on this engine; `docker pull` it, or set "
                             "another with --base-image / APPLIANCE_BASE_IMAGE") from None

    def environment(self, name: str, version: str, env_digest: str, reqs: list[str], gpu: bool, say: Say,
                    image: str | None = None) -> Image:
        runtime = "onnxruntime-gpu>=1.19,<2" if gpu else "onnxruntime>=1.19,<2"
        wanted = [*reqs, *WORKER, runtime]
        wheel = self.project_wheel(say)
        base, base_id = self.base(image, say)
        identity = json.dumps({"base": base_id, "requirements": wanted, "wheel": wheel.name,
                               "wheel_sha": hashlib.sha256(wheel.read_bytes()).hexdigest()}, sort_keys=True)
        digest = hashlib.sha256(identity.encode()).hexdigest()
        tag = f"appliance/env-{name.lower()}:{version}-{digest[:12]}"
        if cached := self._cached(tag, say):
            return cached
        labels = {
            "org.opencontainers.image.title": f"appliance environment {name}:{version}",
            "org.opencontainers.image.version": version,
            "org.opencontainers.image.created": datetime.now(UTC).isoformat(timespec="seconds"),
            "org.opencontainers.image.base.name": base,
            "org.opencontainers.image.vendor": "appliance",
            "appliance.environment.name": name,
            "appliance.environment.version": version,
            "appliance.environment.digest": env_digest,
            "appliance.image.digest": digest,
        }
        with tempfile.TemporaryDirectory(prefix="appliance-build-") as tmp:
            context = Path(tmp)
            wheelhouse = context / "wheelhouse"
            say(f"downloading wheels for {' '.join(wanted)}")
            platforms = [arg for p in _platforms() for arg in ("--platform", p)]
            run([sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--only-binary=:all:",
                  "--python-version", "3.11", "--implementation", "cp", *platforms, "-d", str(wheelhouse), *wanted],
                 say, "downloading wheels")
            shutil.copy2(wheel, wheelhouse / wheel.name)
            (context / "requirements.txt").write_text("\n".join(wanted) + "\n")
            (context / "Dockerfile").write_text(dockerfile.environment(base, labels))
            return Image(tag, self._build(context, tag, say), cached=False)

    def _cached(self, tag: str, say: Say) -> Image | None:
        """The image under a content-addressed tag, if the engine has it: then nothing is built."""
        try:
            found = self.client.images.get(tag)
        except docker.errors.ImageNotFound:
            return None
        say(f"{tag} is up to date")
        return Image(tag, found.id, cached=True)

    def context(self, name: str, path: str, dockerfile_path: str, say: Say) -> Image:
        """An environment's own `build: {path, dockerfile_path}`, built as it is (a custom container),
        tagged by the digest of the context's files: unchanged files are a cache hit without a build."""
        folder = Path(path)
        docker_file = (folder / dockerfile_path).resolve()
        if not folder.is_dir():
            raise BuildError(f"build context {path!r} is not a folder")
        if not docker_file.is_relative_to(folder.resolve()) or not docker_file.is_file():
            raise BuildError(f"build.dockerfile_path {dockerfile_path!r}: no such file inside the build context {path}")
        digest, _, _ = digest_of(folder)
        identity = hashlib.sha256(f"{digest}\n{dockerfile_path}".encode()).hexdigest()
        tag = f"appliance/build-{name.lower()}:{identity[:12]}"
        if cached := self._cached(tag, say):
            return cached
        say(f"building {path} ({dockerfile_path}) as {tag}")
        relative = docker_file.relative_to(folder.resolve()).as_posix()
        return Image(tag, self._build(folder, tag, say, dockerfile=relative), cached=False)

    def _build(self, context: Path, tag: str, say: Say, dockerfile: str | None = None) -> str:
        step = ""
        tail: list[str] = []
        for event in self.client.api.build(path=str(context), tag=tag, rm=True, forcerm=True, decode=True,
                                           pull=False, dockerfile=dockerfile):
            text = (event.get("stream") or event.get("status") or "").rstrip()
            if text:
                say(text)
                tail = [*tail[-19:], text]
                if text.startswith("Step "):
                    step = text
            if "error" in event:
                detail = event.get("errorDetail", {}).get("message") or event["error"]
                raise BuildError(f"docker build failed at {step or 'the first step'}: {detail}\n" + "\n".join(tail))
        return self.client.images.get(tag).id

    def package(self, env_image: str, tag: str, artifacts: list[tuple[Path, str]], dockerfile_text: str,
                say: Say) -> Image:
        """A self-contained image: `artifacts` (source folder → folder name in the context) copied
        into the build context, `dockerfile_text` (from `dockerfile.package`) on top of `env_image`."""
        with tempfile.TemporaryDirectory(prefix="appliance-package-") as tmp:
            context = Path(tmp)
            for source, name in artifacts:
                shutil.copytree(source, context / name, ignore=shutil.ignore_patterns("__pycache__"))
            (context / "Dockerfile").write_text(dockerfile_text)
            return Image(tag, self._build(context, tag, say), cached=False)

    def push(self, tag: str, repository: str, say: Say) -> str:
        """Push under `repository` (REGISTRY/REPO, same tag); the pushed reference with its digest."""
        version = tag.rpartition(":")[2]
        image = self.client.images.get(tag)
        image.tag(repository, version)
        for event in self.client.images.push(repository, version, stream=True, decode=True):
            if "error" in event:
                raise BuildError(f"push to {repository} failed: {event['error']}")
            if event.get("status"):
                say(" ".join(str(event[k]) for k in ("id", "status", "progress") if event.get(k)))
        image.reload()
        digests = [d for d in image.attrs.get("RepoDigests", []) if d.startswith(repository + "@")]
        if not digests:
            raise BuildError(f"push to {repository} reported no digest")
        return digests[0]
