"""Batch jobs in the daemon: invoke (a job and its ledger stored, then run in the background), cancel,
and resume at start-up of every job a killed daemon left unfinished."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from appliance.batch import plan
from appliance.batch.runner import JobRunner, Launch, Progress
from appliance.builder import mlflow_env, venv
from appliance.builder.run import BuildError, host_environment
from appliance.daemon import background
from appliance.registry import FINAL_STATES, JobRecord, Registry
from appliance.runtime import logs
from appliance.specs import BatchDeploymentSpec, SpecError, split_ref

log = logging.getLogger("appliance.jobs")


@dataclass(frozen=True)
class Invocation:
    """`batch-endpoint invoke`'s options, Azure's names."""

    input: str  # a local path (absolute), azureml:NAME@latest or azureml:NAME:VERSION
    input_type: str | None = None  # uri_folder | uri_file; None: what the path is
    deployment_name: str | None = None
    output_path: str | None = None
    output_file_name: str | None = None
    mini_batch_size: int | None = None
    instance_count: int | None = None


class Jobs:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.root = registry.home / "jobs"
        self.runners: dict[str, JobRunner] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.canceled: set[str] = set()  # asked to stop while their environment was being prepared

    def folder(self, name: str) -> Path:
        return self.root / name

    # -- invoke -------------------------------------------------------------------------------

    async def invoke(self, endpoint: str, how: Invocation) -> JobRecord:
        job = await background.run(self._create, endpoint, how)
        self._start(job)
        return job

    def _create(self, endpoint: str, how: Invocation) -> JobRecord:
        ep = self.registry.get_batch_endpoint(endpoint)
        name = how.deployment_name or ep.spec.defaults.deployment_name
        if name is None:
            raise SpecError(f"batch endpoint {endpoint!r} has no default deployment: give --deployment-name, or set "
                            f"one with `appliance batch-endpoint update -n {endpoint} --set "
                            "defaults.deployment_name=NAME`", field="deployment_name")
        dep = self.registry.get_batch_deployment(endpoint, name)
        spec = _overridden(dep.spec, how)
        path, type_, asset = self._input(how)
        files = plan.input_files(path, type_)
        job_name = f"batchjob-{uuid.uuid4()}"
        output = Path(how.output_path) if how.output_path else self.folder(job_name) / "outputs" / "score"
        if how.output_path and output.exists() and not output.is_dir():
            raise SpecError(f"output path {str(output)!r} is a file; give a folder", field="output_path")
        job = self.registry.add_job(name=job_name, spec=spec, code_digest=dep.code_digest,
                                    input={"path": str(path), "type": type_, "asset": asset}, output_dir=str(output),
                                    mini_batches=plan.mini_batches(files, spec.settings.mini_batch_size))
        self.registry.add_event("job.created", f"{endpoint}/{name}", job=job_name, files=len(files))
        return job

    def _input(self, how: Invocation) -> tuple[Path, str, str | None]:
        """(path, uri_folder | uri_file, the data asset's id or None)."""
        if how.input.startswith("azureml:"):
            name, version = split_ref(how.input, "input")
            data = self.registry.get_data(name, version)
            path = self.registry.artifacts.path(data.digest) / data.path_name
            if how.input_type and how.input_type != data.type:
                raise SpecError(f"input_type {how.input_type} does not match data asset {data.ref}, a {data.type}",
                                field="input_type")
            return path, data.type, data.ref
        if "://" in how.input:
            raise SpecError(f"input {how.input!r}: only local paths and data assets (azureml:NAME@latest, "
                            "azureml:NAME:VERSION) can be read here; there is no cloud storage", field="input")
        path = Path(how.input)
        if not path.is_absolute():
            raise SpecError(f"input {how.input!r} must be an absolute path (the CLI resolves it against your folder)",
                            field="input")
        if not path.exists():
            raise SpecError(f"input {how.input!r} does not exist", field="input")
        return path, how.input_type or ("uri_folder" if path.is_dir() else "uri_file"), None

    # -- running ------------------------------------------------------------------------------

    def _start(self, job: JobRecord) -> None:
        task = asyncio.create_task(self._run(job), name=f"job {job.name}")
        self.tasks[job.name] = task
        task.add_done_callback(lambda _: self.tasks.pop(job.name, None))

    async def _run(self, job: JobRecord) -> None:
        folder = self.folder(job.name)
        try:
            launch = await background.run(self._launch, job, folder)
            if job.name in self.canceled:
                await asyncio.to_thread(self.registry.set_job_status, job.name, "Canceled")
                return
            runner = JobRunner(self.registry, job, folder, launch)
            self.runners[job.name] = runner
            state = await runner.run()
            log.info("job %s: %s", job.name, state)
        except (BuildError, SpecError) as exc:
            await asyncio.to_thread(self.registry.set_job_status, job.name, "Failed",
                                    f"environment build failed: {exc}" if isinstance(exc, BuildError) else str(exc))
        except Exception as exc:  # the job fails with why; the daemon goes on
            log.exception("job %s failed", job.name)
            await asyncio.to_thread(self.registry.set_job_status, job.name, "Failed", f"internal error: {exc!r}")
        finally:
            self.runners.pop(job.name, None)
            self.canceled.discard(job.name)

    def _launch(self, job: JobRecord, folder: Path) -> Launch:
        """The job's workers' interpreter (its environment built now, or found built) and variables."""
        spec = job.spec
        settings = spec.settings
        variables = {"AZUREML_BI_OUTPUT_PATH": job.output_dir, "AZUREML_BATCH_OUTPUT_ACTION": settings.output_action,
                     "AZUREML_BATCH_OUTPUT_FILE_NAME": settings.output_file_name,
                     "AZUREML_LOG_LEVEL": settings.logging_level, "PYTHONUNBUFFERED": "1"}
        if settings.key_columns:
            variables["AZUREML_BATCH_KEY_COLUMNS"] = ",".join(settings.key_columns)
        reqs: list[str] = []
        mlflow = False
        if isinstance(spec.model, str):
            model = self.registry.get_model(*split_ref(spec.model, "model"))
            model_dir = self.registry.artifacts.path(model.digest)
            variables["AZUREML_MODEL_DIR"] = str(model_dir)
            found = mlflow_env.mlmodel_folder(model_dir) if model.framework == "mlflow" else None
            if found is not None and job.code_digest is None:  # no-code MLflow: the model's own environment
                variables["MLFLOW_MODEL_FOLDER"] = found.name if found != model_dir else ""
                mlflow = True
                if spec.environment is None:
                    reqs = mlflow_env.requirements(found)[0]
        if job.code_digest and spec.code_configuration:
            variables["AML_APP_ROOT"] = str(self.registry.artifacts.path(job.code_digest) /
                                            self.registry.artifact_name(job.code_digest))
            variables["AZUREML_ENTRY_SCRIPT"] = spec.code_configuration.scoring_script
        env = None
        if isinstance(spec.environment, str):
            env = self.registry.get_environment(*split_ref(spec.environment, "environment")).spec
            reqs = venv.requirements(env)
        python = None
        script = job.code_digest is not None
        if reqs or mlflow or (venv.FROZEN and script):
            build_log = folder / "logs" / "environment.txt"
            build_log.parent.mkdir(parents=True, exist_ok=True)
            with build_log.open("a", buffering=1) as out:
                def say(text: str) -> None:
                    out.write(logs.line("build", text))

                python = str(venv.ensure(self.registry.home / "envs", reqs, say, onnx=not script and not mlflow,
                                         mlflow=mlflow, interpreter=venv.interpreter(env)[0] if env else None,
                                         notes=venv.notes(env) if env else None))
        base = host_environment() if python else dict(os.environ)
        base.update(settings.environment_variables)
        base.update(variables)
        if python:  # this daemon's scoring code, none of its other packages
            path = venv.worker_path(self.registry.home / "run" / "batch-worker-path")
            own = settings.environment_variables.get("PYTHONPATH")
            base["PYTHONPATH"] = os.pathsep.join([str(path), *([own] if own else [])])
        return Launch(python=python, env=base)

    async def cancel(self, name: str) -> JobRecord:
        job = await asyncio.to_thread(self.registry.get_job, name)
        if job.status in FINAL_STATES:
            return job
        runner = self.runners.get(name)
        if runner is not None:
            runner.cancel()
        else:
            self.canceled.add(name)
        task = self.tasks.get(name)
        if task is not None and runner is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), 10)
        elif task is None:  # stored unfinished, never started here
            await asyncio.to_thread(self.registry.set_job_status, name, "Canceled")
        else:  # preparing its environment: it is Canceled once the build is over
            await asyncio.to_thread(self.registry.set_job_status, name, "Canceled")
        return await asyncio.to_thread(self.registry.get_job, name)

    async def cancel_endpoint(self, endpoint: str) -> None:
        jobs = await asyncio.to_thread(self.registry.list_jobs, endpoint, None, True)
        await asyncio.gather(*(self.cancel(j.name) for j in jobs))

    async def resume(self) -> None:
        """At start-up: each job a stopped daemon left unfinished runs on from its ledger."""
        for job in await asyncio.to_thread(self.registry.list_jobs, None, None, True):
            log.info("job %s: resumed (%s when the last daemon stopped)", job.name, job.status)
            self._start(job)

    async def shutdown(self) -> None:
        """The daemon stops: workers stop with it; the jobs stay unfinished in the ledger, to be resumed."""
        for task in list(self.tasks.values()):
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)

    def progress(self, job: JobRecord) -> Progress:
        runner = self.runners.get(job.name)
        if runner is not None and runner.batches:
            return runner.progress()
        progress = Progress.of(self.registry.mini_batches(job.name))
        if job.final and job.started_at and job.ended_at:  # the run's average (a resumed one's counts its downtime)
            seconds = (job.ended_at - job.started_at).total_seconds()
            done = progress.items_succeeded + progress.items_failed
            progress.items_per_second = round(done / seconds, 2) if seconds > 0 and done else None
        return progress

    def log_files(self, name: str) -> list[str]:
        folder = self.folder(name) / "logs"
        return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []


def _overridden(spec: BatchDeploymentSpec, how: Invocation) -> BatchDeploymentSpec:
    """The deployment with the invoke's `--mini-batch-size`, `--instance-count`, `output_file_name`."""
    settings, resources = spec.settings, spec.resources
    changes: dict[str, Any] = {}
    if how.mini_batch_size is not None:
        changes["mini_batch_size"] = how.mini_batch_size
    if how.output_file_name is not None:
        if not how.output_file_name or "/" in how.output_file_name:
            raise SpecError(f"invalid value {how.output_file_name!r}: output_file_name is a file name",
                            field="output_file_name")
        changes["output_file_name"] = how.output_file_name
    if changes:
        settings = msgspec.structs.replace(settings, **changes)
    if how.instance_count is not None:
        resources = msgspec.structs.replace(resources, instance_count=how.instance_count)
    return msgspec.structs.replace(spec, settings=settings, resources=resources)

