"""install.sh links `appliance` where the README says (~/.local/bin, or a prefix), never over another
checkout's link unless told, and says how to put the folder on PATH. Run for real, in a temporary HOME,
linking only (`--link-only`: no venv, no pip)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OURS = ROOT / ".venv" / "bin" / "appliance"


def install(home: Path, *args: str, path: str = "/usr/bin:/bin", **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("PREFIX", "PATH", "HOME")}
    return subprocess.run([str(ROOT / "install.sh"), "--link-only", *args], capture_output=True, text=True,
                          timeout=60, env={**clean, "HOME": str(home), "PATH": path, **env})


def other_checkout(tmp: Path) -> Path:
    script = tmp / "other" / ".venv" / "bin" / "appliance"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\necho other\n")
    script.chmod(0o755)
    return script


def test_links_into_local_bin_and_says_how_to_put_it_on_path(tmp_path: Path) -> None:
    result = install(tmp_path)
    assert result.returncode == 0, result.stderr
    link = tmp_path / ".local" / "bin" / "appliance"
    assert link.is_symlink() and link.resolve() == OURS.resolve()
    assert f'export PATH="{tmp_path}/.local/bin:$PATH"' in result.stderr
    again = install(tmp_path, path=f"{tmp_path}/.local/bin:/usr/bin:/bin")  # safe to run again
    assert again.returncode == 0, again.stderr
    assert f"appliance is on PATH ({link})" in again.stderr and "export PATH" not in again.stderr


def test_a_prefix_links_into_its_bin(tmp_path: Path) -> None:
    for args, env, prefix in ((("--prefix", str(tmp_path / "a")), {}, "a"), ((f"--prefix={tmp_path / 'b'}",), {}, "b"),
                              ((), {"PREFIX": str(tmp_path / "c")}, "c")):
        result = install(tmp_path, *args, **env)
        assert result.returncode == 0, result.stderr
        assert (tmp_path / prefix / "bin" / "appliance").resolve() == OURS.resolve()
    assert not (tmp_path / ".local").exists()


def test_another_checkouts_link_is_never_taken_over_without_force(tmp_path: Path) -> None:
    other = other_checkout(tmp_path)
    link = tmp_path / ".local" / "bin" / "appliance"
    link.parent.mkdir(parents=True)
    link.symlink_to(other)
    refused = install(tmp_path)
    assert refused.returncode == 1
    assert str(link) in refused.stderr and str(other) in refused.stderr and "--force" in refused.stderr
    assert "--prefix" in refused.stderr
    assert os.readlink(link) == str(other)  # untouched

    forced = install(tmp_path, "--force")
    assert forced.returncode == 0, forced.stderr
    assert link.resolve() == OURS.resolve()


def test_a_plain_file_is_not_replaced_but_a_dangling_link_is(tmp_path: Path) -> None:
    link = tmp_path / ".local" / "bin" / "appliance"
    link.parent.mkdir(parents=True)
    link.write_text("#!/bin/sh\n")
    refused = install(tmp_path)
    assert refused.returncode == 1 and "not replacing" in refused.stderr
    assert link.read_text() == "#!/bin/sh\n"

    link.unlink()
    link.symlink_to(tmp_path / "gone" / ".venv" / "bin" / "appliance")
    replaced = install(tmp_path)
    assert replaced.returncode == 0, replaced.stderr
    assert "no longer exists" in replaced.stderr and link.resolve() == OURS.resolve()
