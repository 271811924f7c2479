"""Dockerfile rendering: pure functions from what goes into an image to its Dockerfile text."""

from __future__ import annotations

import json

APP = "/var/azureml-app"
MODELS = "/var/azureml-app/azureml-models"
WORKER_PORT = 8080
UID = 10001


def environment(base_image: str, labels: dict[str, str]) -> str:
    """An environment image: its requirements and the appliance worker, installed offline from the
    wheelhouse in the build context, into /opt/venv; run as a non-root user; with a HEALTHCHECK."""
    label_lines = "".join(f"LABEL {json.dumps(k)}={json.dumps(v)}\n" for k, v in sorted(labels.items()))
    return f"""\
FROM {base_image}
{label_lines}COPY wheelhouse /tmp/wheelhouse
COPY requirements.txt /tmp/requirements.txt
RUN python3 -m venv /opt/venv \\
 && /opt/venv/bin/python -m pip install --no-index --find-links /tmp/wheelhouse --no-cache-dir \\
      --disable-pip-version-check -r /tmp/requirements.txt \\
 && /opt/venv/bin/python -m pip install --no-index --no-deps --no-cache-dir --disable-pip-version-check \\
      /tmp/wheelhouse/appliance-*.whl \\
 && rm -rf /tmp/wheelhouse /tmp/requirements.txt \\
 && (useradd --system --uid {UID} --home-dir {APP} --no-create-home appliance 2>/dev/null \\
     || echo "appliance:x:{UID}:{UID}::{APP}:/usr/sbin/nologin" >> /etc/passwd) \\
 && mkdir -p {MODELS} && chown -R {UID} {APP}
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 AML_APP_ROOT={APP}
WORKDIR {APP}
USER {UID}
EXPOSE {WORKER_PORT}
HEALTHCHECK --interval=10s --timeout=2s --start-period=5s --retries=3 CMD python -c \\
  "import urllib.request; urllib.request.urlopen('http://127.0.0.1:{WORKER_PORT}/', timeout=2)"
CMD ["/opt/venv/bin/python", "-m", "appliance.scoring", "--host", "0.0.0.0", "--port", "{WORKER_PORT}"]
"""


def package(env_image: str, labels: dict[str, str], model: tuple[str, str, str] | None,
            code: tuple[str, str] | None, env: dict[str, str]) -> str:
    """A self-contained image (Azure's Model.package): the environment image plus the model
    (context folder, name, version) and the code (context folder, entry script), baked in."""
    label_lines = "".join(f"LABEL {json.dumps(k)}={json.dumps(v)}\n" for k, v in sorted(labels.items()))
    lines = [f"FROM {env_image}", label_lines.rstrip("\n")]
    if model:
        folder, name, version = model
        lines += [f"COPY --chown={UID} {folder} {MODELS}/{name}/{version}",
                  f"ENV AZUREML_MODEL_DIR={MODELS}/{name}/{version} APPLIANCE_MODEL_NAME={name} "
                  f"APPLIANCE_MODEL_VERSION={version}"]
    if code:
        folder, script = code
        lines += [f"COPY --chown={UID} {folder} {APP}/code",
                  f"ENV AML_APP_ROOT={APP}/code AZUREML_ENTRY_SCRIPT={script}"]
    lines += [f"ENV {k}={json.dumps(v)}" for k, v in sorted(env.items())]
    return "\n".join(line for line in lines if line) + "\n"
