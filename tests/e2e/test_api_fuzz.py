"""Schemathesis against a real daemon's control API, every check on: no 5xx, no answer outside the published
schema (status code, content type, body, headers), no request the schema allows refused or one it forbids
accepted, `Allow` right on 405s and OPTIONS.

The daemon is throwaway, seeded with a key endpoint (my-ep/blue) and a token endpoint (doomed-ep/spare) so that
the fuzzer, which reuses names it reads in answers, reaches past the 404s; it may regenerate their keys, change
their traffic, update or delete them. What is held back, and why:

- `POST /environments/{name}/build` and `POST .../deployments/{name}/package` build Docker images (minutes):
  they are fuzzed against names that don't exist, so their parameters, 404s and schema are checked but no
  build starts. So is `POST .../deployments/{name}/profile`, which loads a deployment for minutes.
- Azure ML documents (`/apply`, `/apply/stream`, `POST /models`, `POST /monitors`), traffic maps and
  `deployment update --set` are valid or not by rules no JSON schema says (files must exist, references
  resolve, traffic adds up to 0 or 100 over deployments the endpoint has): there a schema-valid request may
  be refused with a 400.
- Generated documents are never deployable (their model files don't exist), so no apply waits for instances.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import Daemon

ST = str(Path(sys.executable).parent / "st")
MAX_EXAMPLES = 50  # per operation and phase: about 2,500 requests, 20-30 s on 2 cores

CONFIG = r"""
# A refusal is any 4xx the API documents: 413 and 431 too (a generated query string can outgrow the
# daemon's 16 KiB cap on a request's head), which schemathesis' default list leaves out.
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "431"]

[[operations]]
include-path-regex = '^/api/v1/(apply(/stream)?|models|data|export|monitors|batch-endpoints/\{endpoint\}/jobs)$'
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409"]

[[operations]]
include-path-regex = '^/api/v1/endpoints/(\{name\}/traffic|\{endpoint\}/(drift|deployments/\{name\}/update))$'
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409"]

[[operations]]
include-path = "/api/v1/environments/{name}/build"
parameters = { "path.name" = "no-such-environment" }

[[operations]]
include-path = "/api/v1/endpoints/{endpoint}/deployments/{name}/package"
parameters = { "path.endpoint" = "no-such-endpoint" }

[[operations]]
include-path = "/api/v1/endpoints/{endpoint}/deployments/{name}/profile"
parameters = { "path.endpoint" = "no-such-endpoint" }
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409"]
"""

# Streamed answers are NDJSON, one object a line; the schema describes the stream as the list of its lines.
HOOKS = """
import json

import schemathesis


@schemathesis.deserializer("application/x-ndjson")
def ndjson(ctx, response):
    return [json.loads(line) for line in response.content.decode().splitlines() if line.strip()]
"""


def test_control_api_fuzz(daemon: Daemon, iris_project: Path, tmp_path: Path) -> None:
    (iris_project / "doomed-ep.yml").write_text("name: doomed-ep\nauth_mode: aml_token\n")
    (iris_project / "spare.yml").write_text((iris_project / "blue.yml").read_text()
                                            .replace("name: blue", "name: spare")
                                            .replace("endpoint_name: my-ep", "endpoint_name: doomed-ep"))
    daemon.cli("apply", "-f", "endpoint.yml", "-f", "blue.yml", "-f", "doomed-ep.yml", "-f", "spare.yml",
               cwd=iris_project)

    (tmp_path / "schemathesis.toml").write_text(CONFIG)
    (tmp_path / "ndjson_hooks.py").write_text(HOOKS)
    started = time.monotonic()
    try:
        result = subprocess.run(
            [ST, "--config-file", str(tmp_path / "schemathesis.toml"), "run",
             f"{daemon.url}/api/v1/schema/openapi.json", "--checks", "all", "--max-examples", str(MAX_EXAMPLES),
             "--header", f"Authorization: {daemon.admin['authorization']}", "--request-timeout", "30",
             "--report", "json", "--report-dir", str(tmp_path / "report")],
            cwd=tmp_path, capture_output=True, text=True, timeout=300,
            env={**os.environ, "PYTHONPATH": str(tmp_path), "SCHEMATHESIS_HOOKS": "ndjson_hooks", "NO_COLOR": "1"})
    except subprocess.TimeoutExpired:  # a daemon that stopped answering, most likely
        raise AssertionError(f"schemathesis still running after 300 s; the daemon's log:\n"
                             f"{daemon.log.read_text()[-5000:]}") from None
    took = time.monotonic() - started
    output = result.stdout + result.stderr
    summary = output[output.find("=== SUMMARY"):] if "=== SUMMARY" in output else output[-4000:]
    print(f"schemathesis took {took:.0f} s\n{summary}")

    assert result.returncode == 0, f"schemathesis found failures (exit {result.returncode}):\n{output[-20000:]}"
    report = json.loads(next((tmp_path / "report").glob("*.json")).read_text())
    assert report["failures"] == [] and report["errors"] == [], summary
    operations = report["operations"]
    assert operations["tested"] == operations["total"] >= 28 and operations["errored"] == 0, operations
    assert all(phase["status"] == "success" for name, phase in report["phases"].items() if name != "examples"), \
        report["phases"]
    # A fault inside a streamed answer comes out as an `error` line of a 200, so the log is read too.
    log = daemon.log.read_text()
    assert "Traceback" not in log and "internal error" not in log, log[-5000:]
