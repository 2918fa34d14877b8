"""Where the shared gateway is published: one small JSON file per user per machine.

The gateway itself writes the file (atomically, and only once its socket is bound), so a
reader either sees nothing or a complete record of a gateway that was listening. Readers must
still check that the process is alive and that its `/health` reports the same pid: a gateway
killed with SIGKILL leaves its file behind, and the pid may have been reused since.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = [
    "GatewayState",
    "default_state_dir",
    "parent_pid",
    "pid_alive",
    "read_state",
    "remove_state_if_pid",
    "write_state",
]

STATE_FILE = "gateway.json"
LOCK_FILE = "gateway.lock"
LOG_FILE = "gateway.log"


@dataclass(frozen=True, slots=True)
class GatewayState:
    pid: int
    host: str
    port: int
    url: str
    version: str
    started_at: float

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"


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
        )
    except (OSError, ValueError, KeyError, TypeError):
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
