"""Where the shared gateway is published: one small JSON file per user per machine.

The gateway itself writes the file (atomically, and only once its socket is bound), so a
reader either sees nothing or a complete record of a gateway that was listening. Readers must
still check that the process is alive and that its `/health` reports the same pid: a gateway
killed with SIGKILL leaves its file behind, and the pid may have been reused since.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
import time
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "GatewayState",
    "acquire_lock",
    "default_state_dir",
    "parent_pid",
    "pid_alive",
    "read_state",
    "release_lock",
    "remove_state_if_pid",
    "write_state",
]

STATE_FILE = "gateway.json"
LOCK_FILE = "gateway.lock"
LOG_FILE = "gateway.log"


@dataclass(frozen=True, slots=True)
class GatewayState:
    """What a running gateway publishes. The fields after `started_at` say how it was started,
    so that `restart` can start it again the same way: never a key, only the names of the
    environment variables its keys came from."""

    pid: int
    host: str
    port: int
    url: str
    version: str
    started_at: float
    config_path: str | None = None
    """The absolute path of its `mini-llm.toml` (`--config` or `MINI_LLM_CONFIG`), if any."""
    flags: dict[str, Any] = field(default_factory=dict)
    """The `serve` flags it was given: `host`, `port`, `workers`, `allow_unauthenticated`."""
    key_env: tuple[str, ...] = ()
    """The names of the provider key variables it read keys from (`OPENAI_API_KEY`...)."""
    config_fingerprint: str | None = None
    """`Settings.fingerprint()` of its configuration."""

    def to_json(self) -> str:
        data = asdict(self)
        data["key_env"] = list(self.key_env)
        return json.dumps(data, indent=2) + "\n"


def default_state_dir(env: Mapping[str, str] | None = None) -> Path:
    """`$MINI_LLM_STATE_DIR`, else `$XDG_RUNTIME_DIR/mini-llm`, else the XDG state directory.

    The runtime directory is per user and cleared at logout or reboot, which is exactly the
    lifetime of a running gateway; the state directory is the fallback where there is none.
    """
    env = os.environ if env is None else env
    explicit = env.get("MINI_LLM_STATE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    runtime = env.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir():
        return Path(runtime) / "mini-llm"
    state_home = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home).expanduser() / "mini-llm"


def ensure_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def acquire_lock(path: Path, timeout: float) -> int:
    """An exclusive `flock` on `path` (created 0600), waiting at most `timeout` seconds; the
    descriptor to pass to `release_lock`. Raises `TimeoutError`."""
    ensure_dir(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise TimeoutError(f"timed out waiting for the lock {path}") from None
            time.sleep(0.02)


def release_lock(fd: int) -> None:
    """Release a lock from `acquire_lock`. Unlocking explicitly (not only closing) releases it
    for forked children that share the descriptor too (`serve --workers`)."""
    with suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def read_state(path: Path) -> GatewayState | None:
    """The published state, or None when the file is missing or not a complete record."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return GatewayState(
            pid=int(raw["pid"]),
            host=str(raw["host"]),
            port=int(raw["port"]),
            url=str(raw["url"]),
            version=str(raw["version"]),
            started_at=float(raw["started_at"]),
            # written by older versions without these: optional
            config_path=str(raw["config_path"]) if raw.get("config_path") else None,
            flags=dict(raw.get("flags") or {}),
            key_env=tuple(str(name) for name in raw.get("key_env") or ()),
            config_fingerprint=raw.get("config_fingerprint") or None,
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def write_state(path: Path, state: GatewayState) -> None:
    """Replace the state file atomically: write a temporary file beside it, then rename."""
    ensure_dir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=".gateway-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(state.to_json())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise


def remove_state_if_pid(path: Path, pid: int) -> bool:
    """Remove the state file only if it still describes process `pid`."""
    state = read_state(path)
    if state is None or state.pid != pid:
        return False
    with suppress(OSError):
        path.unlink()
        return True
    return False


def pid_alive(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie waiting to be reaped counts as dead)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, but another user's
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs: trust kill(0)
    # the state letter follows the parenthesised command name, which may contain spaces
    return stat[stat.rfind(")") + 2 : stat.rfind(")") + 3] not in ("Z", "X")


def process_cmdline(pid: int) -> list[str] | None:
    """The command line of `pid` (Linux procfs), or None when it cannot be read."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def parent_pid(pid: int) -> int | None:
    """The parent of `pid` (Linux procfs), or None when it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat[stat.rfind(")") + 2 :].split()[1])
    except (OSError, ValueError, IndexError):
        return None
