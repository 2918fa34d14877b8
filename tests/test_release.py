"""The release: a wheel and an sdist that `twine check` passes, holding what the package needs
and no tests, and a wheel that installs into a fresh virtual environment and runs the
quickstart from there (start, chat with mock/echo, stop)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import mini_llm

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str, timeout: float = 300, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        list(args), capture_output=True, text=True, timeout=timeout, **kwargs
    )


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # an isolated build, as a release makes it (its setuptools comes from the package index)
    built = _run(sys.executable, "-m", "build", "--outdir", str(out), str(ROOT))
    if built.returncode != 0 and "Could not find a version" in built.stdout + built.stderr:
        pytest.skip("!!! THE PACKAGE INDEX IS UNREACHABLE: no build, no release test !!!")
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    return out


def test_the_distributions_pass_twine_check(dist: Path) -> None:
    files = sorted(dist.iterdir())
    assert sorted(f.suffix for f in files) == [".gz", ".whl"], files
    checked = _run(sys.executable, "-m", "twine", "check", "--strict", *map(str, files))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_wheel_holds_the_package_and_no_tests(dist: Path) -> None:
    (wheel,) = dist.glob("*.whl")
    assert wheel.name == f"mini_llm-{mini_llm.__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
        text = archive.read(metadata).decode()
    assert "mini_llm/py.typed" in names
    assert "mini_llm/__init__.py" in names and "mini_llm/cli/__init__.py" in names
    assert not [n for n in names if n.startswith("tests/") or "/tests/" in n]
    shipped = {n for n in names if n.startswith("mini_llm/")}
    data = {
        str(p.relative_to(ROOT / "src"))
        for p in (ROOT / "src" / "mini_llm").rglob("*")
        if p.is_file() and p.suffix in (".json", ".typed")
    }
    assert data <= shipped, sorted(data - shipped)
    assert f"Version: {mini_llm.__version__}" in text
    assert "Requires-Python: >=3.10" in text
    assert [n for n in names if n.endswith("LICENSE")], "the license travels in the wheel"


def test_the_sdist_holds_the_sources_license_and_readme(dist: Path) -> None:
    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = archive.getnames()
    top = f"mini_llm-{mini_llm.__version__}"
    for wanted in ("README.md", "LICENSE", "pyproject.toml", "src/mini_llm/__init__.py"):
        assert f"{top}/{wanted}" in names, wanted


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_the_wheel_installs_in_a_fresh_venv_and_runs_the_quickstart(
    dist: Path, tmp_path: Path
) -> None:
    (wheel,) = dist.glob("*.whl")
    venv = tmp_path / "venv"
    made = _run(sys.executable, "-m", "venv", str(venv))
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MINI_LLM_", "PYTHON", "VIRTUAL_ENV")) and not k.endswith("_API_KEY")
    }
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    installed = _run(str(python), "-m", "pip", "install", "-q", str(wheel), env=env, timeout=600)
    if installed.returncode != 0 and "Could not find a version" in installed.stderr:
        pytest.skip(
            "!!! THE PACKAGE INDEX IS UNREACHABLE: the wheel's dependencies could not be "
            "installed, so the fresh-venv quickstart did not run !!!"
        )
    assert installed.returncode == 0, installed.stderr[-3000:]
    where = _run(str(python), "-c", "import mini_llm, sys; print(mini_llm.__file__)", env=env)
    assert where.stdout.startswith(str(venv)), where.stdout  # the wheel, not this checkout
    cli = str(venv / "bin" / "mini-llm")
    env["MINI_LLM_STATE_DIR"] = str(tmp_path / "state")
    version = _run(cli, "--version", env=env)
    assert version.stdout.strip() == f"mini-llm {mini_llm.__version__}"
    started = _run(cli, "start", "--port", str(_free_port()), env=env, timeout=60)
    try:
        assert started.returncode == 0, started.stderr
        chat = _run(cli, "chat", "Hello", "-m", "mock/echo", env=env, timeout=60)
        assert chat.returncode == 0, chat.stderr
        assert chat.stdout.strip() == "Hello"
    finally:
        stopped = _run(cli, "stop", env=env, timeout=60)
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped" in stopped.stdout
