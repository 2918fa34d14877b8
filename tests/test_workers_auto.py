"""`--workers auto` / `MINI_LLM_WORKERS=auto` (what the container image runs): one worker per
CPU the process may use, its affinity mask narrowed by a cgroup CPU quota."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mini_llm.config import ConfigError, load_settings
from mini_llm.settings_table import ROWS_BY_NAME, Workers, available_cpus


def test_workers_auto_is_one_per_cpu_from_every_layer(tmp_path: Path) -> None:
    cpus = available_cpus()
    assert 1 <= cpus <= len(os.sched_getaffinity(0))
    config = tmp_path / "mini-llm.toml"
    config.write_text('[server]\nworkers = "auto"\n')
    from_file = load_settings(env={}, config_path=str(config))
    assert (from_file.workers, from_file.sources["workers"]) == (cpus, str(config))
    from_env = load_settings(env={"MINI_LLM_WORKERS": "AUTO"})
    assert (from_env.workers, from_env.sources["workers"]) == (cpus, "MINI_LLM_WORKERS")
    from_flag = load_settings(env={"MINI_LLM_WORKERS": "3"}, flags={"workers": "auto"})
    assert (from_flag.workers, from_flag.sources["workers"]) == (cpus, "--workers")
    assert load_settings(env={"MINI_LLM_WORKERS": "3"}).workers == 3


@pytest.mark.parametrize(
    ("raw", "said"),
    [
        ("many", "MINI_LLM_WORKERS must be a whole number or auto, got 'many'"),
        ("0", "MINI_LLM_WORKERS must be between 1 and 1024, got 0"),
        ("1.5", "MINI_LLM_WORKERS must be a whole number or auto, got '1.5'"),
    ],
)
def test_a_bad_workers_value_is_named(raw: str, said: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env={"MINI_LLM_WORKERS": raw})
    assert said in str(caught.value)


def test_the_workers_row_says_auto() -> None:
    row = ROWS_BY_NAME["workers"]
    assert isinstance(row.kind, Workers)
    assert "auto" in row.kind.describe() and "auto" in row.help


def test_auto_follows_the_affinity_mask() -> None:
    """A process allowed one CPU gets one worker, whatever the machine has."""
    code = (
        "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
        "from mini_llm.settings_table import available_cpus; print(available_cpus())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert out.stdout.strip() == "1"


@pytest.mark.parametrize(
    ("files", "cpus"),
    [
        ({"cpu.max": "150000 100000\n"}, 2),  # --cpus 1.5: rounded up
        ({"cpu.max": "50000 100000\n"}, 1),
        ({"cpu.max": "max 100000\n"}, None),  # no quota: the affinity mask
        ({"cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({"cpu.max": "garbage\n"}, None),
        ({}, None),
    ],
    ids=["v2-1.5", "v2-0.5", "v2-max", "v1-1", "v1-none", "v2-unreadable", "none"],
)
def test_auto_follows_the_cgroup_quota(
    files: dict[str, str], cpus: int | None, tmp_path: Path
) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    mask = len(os.sched_getaffinity(0))
    expected = mask if cpus is None else min(mask, cpus)
    assert available_cpus(str(tmp_path)) == expected


def _clean_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith("MINI_LLM_") or k.endswith(("_API_KEY", "_API_KEYS", "_BASE_URL")))
    }
    env["MINI_LLM_LOG_LEVEL"] = "warning"
    return env


def _children(parent: int) -> set[int]:
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # pid (comm) state ppid ...: comm may hold spaces, so split after its closing paren
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                found.add(int(entry.name))
    return found


def test_serve_workers_auto_forks_one_worker_per_cpu(tmp_path: Path) -> None:
    cpus = available_cpus()
    if cpus < 2:
        pytest.skip("!!! one CPU here: `auto` runs one process, nothing to count")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mini_llm", "serve", "--port", "0", "--workers", "auto"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**_clean_env(), "MINI_LLM_STATE_DIR": str(tmp_path)},
    )
    with proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()  # printed once every worker's socket is bound
            assert "listening on" in line, line
            deadline = time.monotonic() + 20
            while len(_children(proc.pid)) < cpus and time.monotonic() < deadline:
                time.sleep(0.1)
            assert len(_children(proc.pid)) == cpus
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0
