"""Hostile input through the real CLI and daemon: YAML bombs, circular aliases, non-UTF-8 files, YAML tags
in `--set`, symbolic links out of a model folder. Each gives one clear line and a non-zero exit, never a
traceback, and changes nothing stored."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import Daemon

# Nine levels of nine aliases: 387 million strings once expanded.
LAUGHS = "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9 if prev else ['lol'] * 9)}]\n"
    for prev, name in zip([None, *"abcdefgh"], "abcdefghi", strict=True))


def refused(daemon: Daemon, *args: str, cwd: Path | None = None) -> str:
    """The one line the CLI printed when it refused `args`."""
    result = daemon.cli(*args, cwd=cwd, check=False)
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def listed(daemon: Daemon, what: str) -> list[object]:
    return json.loads(daemon.cli(what, "list", "-o", "json").stdout)


def test_yaml_bombs_and_bad_files_are_refused_with_one_line(daemon: Daemon, tmp_path: Path) -> None:
    (tmp_path / "bomb.yml").write_text(LAUGHS)
    (tmp_path / "loop.yml").write_text("name: &a [*a]\nimage: python:3.11\n")
    (tmp_path / "deep.yml").write_text("[" * 50_000 + "]" * 50_000)
    (tmp_path / "latin1.yml").write_bytes("name: caf\xe9\nimage: python:3.11\n".encode("latin-1"))
    (tmp_path / "tag.yml").write_text("name: env\nimage: !!python/object/apply:os.system ['true']\n")
    (tmp_path / "big.yml").write_text("name: env\nimage: python:3.11\ndescription: " + "x" * 2_000_000 + "\n")
    # The conda file is read by the daemon, not the CLI.
    (tmp_path / "conda.yml").write_text(LAUGHS)
    (tmp_path / "env.yml").write_text("name: bomb\nimage: python:3.11\nconda_file: conda.yml\n")

    expected = {
        "bomb.yml": "expands to more than 100000 nodes",
        "loop.yml": "circular alias",
        "deep.yml": "nesting depth",
        "latin1.yml": "not UTF-8 text: byte 0xe9 at offset 9",
        "tag.yml": "tag !!python/object/apply:os.system is not allowed",
        "big.yml": "larger than 1048576 bytes",
        "env.yml": "expands to more than 100000 nodes",
    }
    for name, message in expected.items():
        line = refused(daemon, "apply", "-f", name, cwd=tmp_path)
        assert f"{name}: " in line and message in line, line  # the file as the user named it
    assert "conda.yml" in refused(daemon, "apply", "-f", "env.yml", cwd=tmp_path)

    assert listed(daemon, "environment") == []
    assert listed(daemon, "model") == []
    assert daemon.proc is not None and daemon.proc.poll() is None  # still serving


def test_link_out_of_a_model_folder_is_refused(daemon: Daemon, tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("not for the store\n")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.onnx").write_bytes(b"onnx")
    (tmp_path / "model" / "shadow").symlink_to(tmp_path / "secret")
    (tmp_path / "model.yml").write_text("name: iris\npath: model\n")
    line = refused(daemon, "apply", "-f", "model.yml", cwd=tmp_path)
    assert "symbolic link 'shadow' points to" in line and str(tmp_path / "secret") in line, line
    assert listed(daemon, "model") == []
    assert not list((daemon.home / "artifacts" / "sha256").iterdir())


def test_tags_in_set_values_are_refused(daemon: Daemon, iris_project: Path) -> None:
    daemon.cli("apply", "-f", "endpoint.yml", "-f", "blue.yml", cwd=iris_project)
    before = json.loads(daemon.cli("deployment", "show", "my-ep", "blue", "-o", "json").stdout)
    for value in ("!!python/object/apply:os.system ['true']", "!!binary aGVsbG8=", "!foo 2", "&a [*a]"):
        line = refused(daemon, "deployment", "update", "my-ep", "blue", "--set", f"instance_count={value}")
        assert "instance_count" in line and ("is not allowed" in line or "circular alias" in line), line
    after = json.loads(daemon.cli("deployment", "show", "my-ep", "blue", "-o", "json").stdout)
    assert after["spec"] == before["spec"] if "spec" in before else after == before
