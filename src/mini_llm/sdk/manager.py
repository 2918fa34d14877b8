"""`GatewayManager`: one shared gateway per user per machine, started on demand.

The protocol, shared by every process (and every language) that wants the gateway:

1. Read the state file. If its pid is alive and `GET /health` answers with that same pid, use it.
2. Otherwise take an exclusive `flock` on the lock file beside it and look again: another
   process may have started a gateway while we waited.
3. Still nothing: spawn `python -m mini_llm serve --state-file ...` in its own session, output
   to the log file, and wait until the gateway itself has published its bound port in the state
   file and `/health` answers with the spawned pid. No log output is parsed.

Configuration travels in the child's environment (and a config file path); keys are never put
on a command line.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import json
import logging
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from .. import __version__
from .errors import GatewayConfigError, GatewayStartError, GatewayVersionError, MiniLLMError
from .state import (
    LOCK_FILE,
    LOG_FILE,
    STATE_FILE,
    GatewayState,
    acquire_lock,
    default_state_dir,
    ensure_dir,
    parent_pid,
    pid_alive,
    process_cmdline,
    read_state,
    release_lock,
    remove_state_if_pid,
)

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["GatewayManager", "GatewayStatus", "ensure_gateway", "fetch_health", "running_gateway"]

log = logging.getLogger("mini_llm.sdk")

VersionPolicy = Literal["warn", "restart", "error"]

LOG_ROTATE_BYTES = 10 * 1024 * 1024
_POLL = 0.02


def fetch_health(url: str, timeout: float = 2.0) -> dict[str, Any] | None:
    """`GET {url}/health` decoded, or None when the gateway does not answer 200 with JSON."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        conn.request("GET", "/health")
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            return None
        data = json.loads(body)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def _same_gateway(answering_pid: object, published_pid: int) -> bool:
    """Whether `/health`'s pid is the published gateway: the process itself, or one of its
    workers (`serve --workers N` answers from forked children of the published pid)."""
    if not isinstance(answering_pid, int):
        return False
    return answering_pid == published_pid or parent_pid(answering_pid) == published_pid


def running_gateway(
    state_file: Path, health_timeout: float = 2.0
) -> tuple[GatewayState, dict[str, Any]] | None:
    """The gateway `state_file` names and its health, if it is alive and answers as itself."""
    state = read_state(state_file)
    if state is None or not pid_alive(state.pid):
        return None
    health = fetch_health(state.url, health_timeout)
    if health is None or not _same_gateway(health.get("pid"), state.pid):
        return None
    return state, health


DEFAULT_STOP_MARGIN = 5.0
"""`stop` without a grace period waits the gateway's own drain time plus this much."""
DEFAULT_STOP_GRACE = 35.0
"""... or this long when the gateway does not say its drain time (30 s + 5 s by default)."""


@dataclass(frozen=True, slots=True)
class GatewayStatus:
    """What `mini-llm status` shows: the published state and whether it answers as itself."""

    state: GatewayState | None
    health: dict[str, Any] | None
    state_file: Path
    log_file: Path

    @property
    def running(self) -> bool:
        return self.state is not None and self.health is not None

    @property
    def uptime_s(self) -> float | None:
        if self.health is not None and isinstance(self.health.get("uptime_s"), (int, float)):
            return float(self.health["uptime_s"])
        return None

    def to_dict(self) -> dict[str, Any]:
        state = self.state
        return {
            "running": self.running,
            "pid": state.pid if state else None,
            "url": state.url if state else None,
            "version": (self.health or {}).get("version", state.version if state else None),
            "uptime_s": self.uptime_s,
            "started_at": state.started_at if state else None,
            "health": "ok" if self.running else ("unreachable" if state else None),
            "state_file": str(self.state_file),
            "log_file": str(self.log_file),
        }


class GatewayManager:
    """Finds, starts, stops and (optionally) supervises the shared gateway.

    `state_dir` holds the state, lock and log files (default: `$MINI_LLM_STATE_DIR`, else the
    user's XDG runtime directory). `host`, `port` and `config_path` are passed to a gateway this
    manager starts (None: the gateway's own configuration decides, port 3333 by default); `env`
    is added to the environment it inherits, which is how keys reach it. `stop_grace`: seconds
    `stop` waits after SIGTERM before SIGKILL (None: the gateway's own drain time plus 5 s).
    """

    def __init__(
        self,
        *,
        state_dir: str | Path | None = None,
        host: str | None = None,
        port: int | None = None,
        config_path: str | Path | None = None,
        env: Mapping[str, str] | None = None,
        on_version_mismatch: VersionPolicy = "warn",
        start_timeout: float = 20.0,
        health_timeout: float = 2.0,
        stop_grace: float | None = None,
        workers: int | None = None,
        check_config: bool = False,
        allow_unauthenticated: bool = False,
    ) -> None:
        self.env = dict(env or {})
        self.state_dir = (
            Path(state_dir) if state_dir else default_state_dir({**os.environ, **self.env})
        ).absolute()
        self.host = host
        self.port = port
        self.config_path = Path(config_path).absolute() if config_path else None
        self.on_version_mismatch: VersionPolicy = on_version_mismatch
        self.start_timeout = start_timeout
        self.health_timeout = health_timeout
        self.stop_grace = stop_grace
        self.workers = workers
        self.check_config = check_config
        self.allow_unauthenticated = allow_unauthenticated
        """Let the gateway listen on a non-loopback address without a master key."""
        self.differences: list[str] = []
        """What the running gateway found by the last `ensure` runs differently from what this
        manager asks for (`check_config`), named; empty when the same or not checked."""
        self.started_pid: int | None = None
        """The pid of the last gateway this manager spawned (None: it found one running)."""
        self.events: deque[str] = deque(maxlen=200)
        self._children: set[int] = set()  # spawned gateways not reaped yet
        self._exit_status: dict[int, int] = {}
        self._thread_lock = threading.RLock()
        self._lock_depth = 0
        self._warned: set[int] = set()
        self._warned_config: set[int] = set()
        self._supervisor: threading.Thread | None = None
        self._stop_supervisor = threading.Event()
        self._atexit_registered = False

    @property
    def state_file(self) -> Path:
        return self.state_dir / STATE_FILE

    @property
    def lock_file(self) -> Path:
        return self.state_dir / LOCK_FILE

    @property
    def log_file(self) -> Path:
        return self.state_dir / LOG_FILE

    # finding

    def _probe(self, state: GatewayState) -> dict[str, Any] | None:
        """The health of the gateway `state` describes, if it is alive and answers as itself."""
        self._reap()
        if not pid_alive(state.pid):
            return None
        health = fetch_health(state.url, self.health_timeout)
        if health is None or not _same_gateway(health.get("pid"), state.pid):
            return None
        return health

    def _healthy(self) -> tuple[GatewayState, dict[str, Any]] | None:
        state = read_state(self.state_file)
        if state is None:
            return None
        health = self._probe(state)
        return (state, health) if health is not None else None

    def find(self) -> GatewayState | None:
        """The running gateway, checked by pid and `/health`; None when there is none."""
        found = self._healthy()
        return found[0] if found else None

    def status(self) -> GatewayStatus:
        state = read_state(self.state_file)
        health = self._probe(state) if state is not None else None
        return GatewayStatus(state, health, self.state_file, self.log_file)

    def _version_ok(self, state: GatewayState, health: dict[str, Any]) -> bool:
        running = str(health.get("version"))
        if running == __version__:
            return True
        message = (
            f"the running gateway (pid {state.pid}, {state.url}) is version {running}, "
            f"this is mini-llm {__version__}"
        )
        if self.on_version_mismatch == "error":
            raise GatewayVersionError(
                message + "; restart it with `mini-llm restart`",
                running=running,
                expected=__version__,
            )
        if self.on_version_mismatch == "restart":
            return False
        if state.pid not in self._warned:
            self._warned.add(state.pid)
            log.warning("%s; using it (restart it to upgrade)", message)
        return True

    # starting

    def ensure(self) -> str:
        """The base URL of a healthy gateway, started if there is none."""
        return self.ensure_state()[0].url

    def ensure_state(self, *, keep_port: bool = False) -> tuple[GatewayState, bool]:
        """The running gateway's state, and whether this call started it. `keep_port`: a
        replacement for a dead gateway is started as it was (its port, unless a port was given,
        so that clients holding its URL keep working; its configuration file and flags).

        With `check_config`, the configuration this manager would start a gateway with is
        validated first (`GatewayConfigError`, whether or not a gateway runs), and a running
        gateway that differs from it is used with a warning naming what differs
        (`differences`)."""
        if self.check_config:
            self._requested_settings()
        self.differences = []
        found = self._healthy()
        if found and self.check_config:
            self._check_differences(*found)
        if found and self._version_ok(*found):
            return found[0], False
        with self._locked():
            found = self._healthy()
            if found and self._version_ok(*found):
                if self.check_config and not self.differences:
                    self._check_differences(*found)
                return found[0], False
            if found:
                self._event(
                    f"restarting gateway pid {found[0].pid} (version "
                    f"{found[1].get('version')}) as version {__version__}"
                )
                self._stop_locked(found[0])
            previous = read_state(self.state_file) if keep_port else None
            return self._start_locked(previous), True

    def _requested_settings(self, previous: GatewayState | None = None) -> Settings:
        """The settings a gateway started by this manager would have (`previous`: the one it
        would replace, see `_child_env`); `GatewayConfigError` when they are invalid."""
        from ..config import ConfigError, load_settings

        env = self._child_env(previous)
        config_path = env.pop("MINI_LLM_CONFIG", None)
        flags: dict[str, Any] = dict(previous.flags) if previous is not None else {}
        flags = {k: v for k, v in flags.items() if k in ("host", "port")}
        if self.host is not None:
            flags["host"] = self.host
        if self.port is not None:
            flags["port"] = self.port
        try:
            return load_settings(env=env, config_path=config_path, flags=flags)
        except ConfigError as e:
            raise GatewayConfigError(str(e), problems=e.problems) from None

    def _check_differences(self, state: GatewayState, health: dict[str, Any]) -> None:
        differences = self._differences(state, health)
        self.differences = differences
        if differences and state.pid not in self._warned_config:
            self._warned_config.add(state.pid)
            log.warning(
                "the running gateway (pid %d, %s) differs from the configuration asked for: "
                "%s; it is used as it is (`%s` applies it, for every process sharing it)",
                state.pid,
                state.url,
                "; ".join(differences),
                self._restart_command(),
            )

    def _differences(self, state: GatewayState, health: dict[str, Any]) -> list[str]:
        asked = self._requested_settings()
        found: list[str] = []
        if self.host and self.host != state.host:
            found.append(f"host (it listens on {state.host}, {self.host} asked)")
        if self.port and self.port != state.port:
            found.append(f"port (it listens on {state.port}, {self.port} asked)")
        asked_path = str(Path(asked.config_path).absolute()) if asked.config_path else None
        if asked_path != state.config_path:
            found.append(
                f"configuration file (it read {state.config_path or 'none'}, "
                f"{asked_path or 'none'} asked)"
            )
        published = health.get("config_fingerprint")
        running = published if isinstance(published, str) else state.config_fingerprint
        if running is None or running == asked.fingerprint():
            return found  # the same, or a gateway too old to tell
        # name what differs: the running gateway's configuration as its source reads now
        # (exact while its file has not changed since it started)
        try:
            theirs = self._requested_settings_of(state)
        except GatewayConfigError:
            theirs = None
        if theirs is not None and theirs.fingerprint() == running:
            found += theirs.diff(asked)
        elif not found:
            found.append("its configuration (its file or environment changed since it started)")
        return found

    def _requested_settings_of(self, state: GatewayState) -> Settings:
        from ..config import ConfigError, load_settings

        env = {**os.environ, **self.env}
        env.pop("MINI_LLM_CONFIG", None)
        flags = {k: v for k, v in state.flags.items() if k in ("host", "port")}
        try:
            return load_settings(env=env, config_path=state.config_path, flags=flags)
        except ConfigError as e:
            raise GatewayConfigError(str(e), problems=e.problems) from None

    def _restart_command(self) -> str:
        command = "mini-llm restart"
        if self.config_path is not None:
            command += f" --config {self.config_path}"
        if self.host:
            command += f" --host {self.host}"
        if self.port is not None:
            command += f" --port {self.port}"
        return command

    def restart(self) -> GatewayState:
        """Stop the gateway and start it again as it was started (see `replace`)."""
        return self.replace()[0]

    def replace(self) -> tuple[GatewayState, GatewayState | None]:
        """Stop the gateway and start a new one; the new state and the replaced one (None when
        none was running). The new gateway is started as the old one was (its address, its
        configuration file, its flags) unless this manager was given others; its keys come
        from this process's environment, and a key variable the old one had but this
        environment lacks is named in a warning."""
        with self._locked():
            old = read_state(self.state_file)  # a dead gateway's too: how it was started
            found = self._healthy()
            if old is not None:
                missing = [n for n in old.key_env if not self._child_env().get(n)]
                if missing:
                    log.warning(
                        "the gateway pid %d was started with %s, which %s not set here: the new "
                        "gateway will lack %s",
                        old.pid,
                        ", ".join(missing),
                        "is" if len(missing) == 1 else "are",
                        "that key" if len(missing) == 1 else "those keys",
                    )
                self._stop_locked(old)
            return self._start_locked(old), (found[0] if found else None)

    def _command(self, previous: GatewayState | None) -> list[str]:
        flags = previous.flags if previous is not None else {}
        host = self.host or flags.get("host")
        port: Any = self.port
        if not port and previous is not None:
            port = previous.port  # 0 is "any port": the one clients already know is best
        workers = self.workers or flags.get("workers")
        cmd = [sys.executable, "-m", "mini_llm", "serve", "--state-file", str(self.state_file)]
        if host:
            cmd += ["--host", str(host)]
        if port is not None:
            cmd += ["--port", str(port)]
        if workers and int(workers) > 1:
            cmd += ["--workers", str(workers)]
        if self.allow_unauthenticated or flags.get("allow_unauthenticated"):
            cmd.append("--allow-unauthenticated")
        return cmd

    def _child_env(self, previous: GatewayState | None = None) -> dict[str, str]:
        env = {**os.environ, **self.env}
        if self.config_path is not None:
            env["MINI_LLM_CONFIG"] = str(self.config_path)
        elif previous is not None:
            # the same configuration source as the gateway it replaces, even none
            if previous.config_path:
                env["MINI_LLM_CONFIG"] = previous.config_path
            else:
                env.pop("MINI_LLM_CONFIG", None)
        elif env.get("MINI_LLM_CONFIG"):
            env["MINI_LLM_CONFIG"] = str(Path(env["MINI_LLM_CONFIG"]).absolute())
        # a source checkout (not an installed package): make the child run this same code
        root = str(Path(__file__).resolve().parents[2])
        if not any(part in root for part in ("site-packages", "dist-packages")):
            paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
            if root not in paths:
                env["PYTHONPATH"] = os.pathsep.join([root, *paths])
        return env

    def _start_locked(self, previous: GatewayState | None = None) -> GatewayState:
        """Start a gateway; `previous`: the one it replaces, whose address, configuration file
        and flags it takes unless this manager was given others."""
        ensure_dir(self.state_dir)
        old = read_state(self.state_file)
        if old is not None:
            # Unreachable or not answering as itself. Stop it only if it is provably our
            # gateway (a pid may have been reused by an unrelated process).
            if pid_alive(old.pid) and self._is_our_gateway(old.pid):
                self._event(f"stopping unresponsive gateway pid {old.pid}")
                self._terminate(old.pid)
            remove_state_if_pid(self.state_file, old.pid)
        self._rotate_log()
        cmd = self._command(previous)
        offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        self._event(f"starting mini-llm {__version__}")
        pid = self._spawn(cmd, self._child_env(previous))
        deadline = time.monotonic() + self.start_timeout
        while True:
            self._reap()
            if pid not in self._children:
                code = os.waitstatus_to_exitcode(self._exit_status.pop(pid, 0))
                output = self._log_since(offset)
                cls = GatewayConfigError if code == 2 else GatewayStartError
                raise cls.exited(code, output, self.log_file)
            state = read_state(self.state_file)
            if state is not None and state.pid == pid:
                health = fetch_health(state.url, self.health_timeout)
                if health is not None and _same_gateway(health.get("pid"), pid):
                    self.started_pid = pid
                    self._event(f"started gateway pid {pid} at {state.url}")
                    return state
            if time.monotonic() > deadline:
                self._terminate(pid)
                raise GatewayStartError(
                    f"the gateway did not become ready within {self.start_timeout:g} s "
                    f"(log: {self.log_file})"
                )
            time.sleep(_POLL)

    def _spawn(self, cmd: list[str], env: dict[str, str]) -> int:
        """Start the gateway in a session of its own: stdin from /dev/null, output appended to
        the log. posix_spawn keeps no `Popen` object around (whose finalizer would warn about
        a child that is meant to outlive it); the child is reaped by `_reap`."""
        log_fd = os.open(self.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        null_fd = os.open(os.devnull, os.O_RDONLY)
        try:
            pid = os.posix_spawn(
                cmd[0],
                cmd,
                env,
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, null_fd, 0),
                    (os.POSIX_SPAWN_DUP2, log_fd, 1),
                    (os.POSIX_SPAWN_DUP2, log_fd, 2),
                ],
                setsid=True,
            )
        except OSError as e:
            raise GatewayStartError(f"cannot start {cmd[0]}: {e}") from None
        finally:
            os.close(log_fd)
            os.close(null_fd)
        self._children.add(pid)
        return pid

    def _log_since(self, offset: int) -> list[str]:
        """What the gateway printed since `offset`, as it printed it (the manager's own
        `--- ` lines left out), at most the last 20 lines."""
        try:
            with self.log_file.open("rb") as f:
                f.seek(offset)
                text = f.read(64 * 1024).decode("utf-8", errors="replace")
        except OSError:
            return []
        lines = [
            line.rstrip()
            for line in text.splitlines()
            if line.strip() and not line.startswith("--- ")
        ]
        return lines[-20:]

    def _rotate_log(self) -> None:
        try:
            if self.log_file.stat().st_size > LOG_ROTATE_BYTES:
                os.replace(self.log_file, self.log_file.with_name(LOG_FILE + ".1"))
        except OSError:
            pass

    # stopping

    def stop(self) -> GatewayState | None:
        """Stop the gateway (SIGTERM, then SIGKILL after `stop_grace`, or after the gateway's
        own drain time plus 5 s when `stop_grace` is None); the stopped state, or
        None when none was running. A stale state file is removed; an unrelated process whose
        pid it names is left alone."""
        with self._locked():
            state = read_state(self.state_file)
            if state is None:
                return None
            return state if self._stop_locked(state) else None

    def _stop_locked(self, state: GatewayState) -> bool:
        stopped = False
        health = self._probe(state) if pid_alive(state.pid) else None
        if pid_alive(state.pid) and (health is not None or self._is_our_gateway(state.pid)):
            self._terminate(state.pid, self._grace(health))
            stopped = True
            self._event(f"stopped gateway pid {state.pid}")
        remove_state_if_pid(self.state_file, state.pid)
        return stopped

    def _grace(self, health: dict[str, Any] | None) -> float:
        """How long to wait after SIGTERM: `stop_grace` when given (a bound, whatever the
        gateway's own drain time), else that drain time plus a margin."""
        if self.stop_grace is not None:
            return self.stop_grace
        drain = (health or {}).get("shutdown_grace_s")
        if isinstance(drain, (int, float)) and not isinstance(drain, bool):
            return float(drain) + DEFAULT_STOP_MARGIN
        return DEFAULT_STOP_GRACE

    def _is_our_gateway(self, pid: int) -> bool:
        cmdline = process_cmdline(pid)
        return (
            cmdline is not None
            and "serve" in cmdline
            and str(self.state_file) in cmdline
            and any("mini_llm" in part or "mini-llm" in part for part in cmdline)
        )

    def _terminate(self, pid: int, grace: float | None = None) -> bool:
        """SIGTERM, wait `grace` (default: see `_grace`), then SIGKILL; whether it is gone."""
        grace = self._grace(None) if grace is None else grace
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                self._reap()
                return True
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                self._reap()
                if not pid_alive(pid):
                    return True
                time.sleep(_POLL)
            if sig == signal.SIGTERM:
                self._event(f"gateway pid {pid} ignored SIGTERM for {wait:g} s; sending SIGKILL")
        return not pid_alive(pid)

    def _reap(self) -> None:
        """Collect the exit status of gateways this manager spawned that have exited."""
        for child in list(self._children):
            try:
                pid, status = os.waitpid(child, os.WNOHANG)
            except ChildProcessError:
                pid, status = child, 0
            if pid:
                self._children.discard(child)
                self._exit_status[child] = status

    # supervision

    def supervise(self, interval: float = 30.0, max_backoff: float = 30.0) -> None:
        """Check the gateway's health every `interval` seconds in a daemon thread, restarting
        it when it is gone or unhealthy; failed restarts are retried after 1, 2, 4 ... seconds,
        at most `max_backoff`."""
        if self._supervisor is not None and self._supervisor.is_alive():
            return
        self._stop_supervisor.clear()
        self._supervisor = threading.Thread(
            target=self._supervise_loop,
            args=(interval, max_backoff),
            name="mini-llm-supervisor",
            daemon=True,
        )
        self._supervisor.start()

    def stop_supervising(self, timeout: float = 5.0) -> None:
        self._stop_supervisor.set()
        if self._supervisor is not None:
            self._supervisor.join(timeout)
            self._supervisor = None

    def _supervise_loop(self, interval: float, max_backoff: float) -> None:
        while not self._stop_supervisor.wait(interval):
            if self._healthy() is not None:
                continue
            self._event("gateway is gone or unhealthy; restarting it")
            delay = 1.0
            while not self._stop_supervisor.is_set():
                try:
                    state, started = self.ensure_state(keep_port=True)
                except MiniLLMError as e:
                    self._event(f"restart failed: {e}; retrying in {delay:g} s")
                    if self._stop_supervisor.wait(delay):
                        return
                    delay = min(delay * 2, max_backoff)
                    continue
                if not started:
                    self._event(f"gateway pid {state.pid} is back (started elsewhere)")
                break

    def stop_on_exit(self) -> None:
        """At interpreter exit, stop the gateway if this manager started it (and it is still
        the published one); a gateway found already running is left alone."""
        if not self._atexit_registered:
            self._atexit_registered = True
            atexit.register(self._stop_at_exit)

    def _stop_at_exit(self) -> None:
        self.stop_supervising()
        if self.started_pid is None:
            return
        state = read_state(self.state_file)
        if state is not None and state.pid == self.started_pid:
            with contextlib.suppress(MiniLLMError):
                self.stop()

    # helpers

    def _event(self, message: str) -> None:
        self.events.append(message)
        log.info("%s", message)
        line = f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} manager pid {os.getpid()}: {message}\n"
        with contextlib.suppress(OSError):
            ensure_dir(self.state_dir)
            # 0600 like the state and lock files: the log may show paths and model names
            fd = os.open(self.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """The machine-wide lock (flock), re-entrant within this manager."""
        with self._thread_lock:
            if self._lock_depth:
                self._lock_depth += 1
                try:
                    yield
                finally:
                    self._lock_depth -= 1
                return
            try:
                fd = acquire_lock(self.lock_file, self.start_timeout + self._grace(None) + 10.0)
            except TimeoutError as e:
                raise GatewayStartError(str(e)) from None
            try:
                self._lock_depth = 1
                try:
                    yield
                finally:
                    self._lock_depth = 0
            finally:
                release_lock(fd)


_managers: dict[Path, GatewayManager] = {}
_managers_lock = threading.Lock()


def ensure_gateway(
    *,
    state_dir: str | Path | None = None,
    host: str | None = None,
    port: int | None = None,
    config_path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    on_version_mismatch: VersionPolicy = "warn",
    supervise: bool = False,
    supervise_interval: float = 30.0,
    stop_on_exit: bool = False,
    timeout: float = 20.0,
) -> str:
    """The base URL of the shared gateway (e.g. `http://127.0.0.1:3333`), started if needed.

    Calls in one process share one `GatewayManager` per state directory, so `supervise` and
    `stop_on_exit` are set up once; the first call's start options are the ones kept. Given
    `host`, `port`, `config_path` or `env`, the configuration is validated
    (`GatewayConfigError`), and a running gateway that differs is used with a warning (logger
    `mini_llm.sdk`) naming what differs.
    """
    manager = GatewayManager(
        check_config=any(v is not None for v in (host, port, config_path, env)),
        state_dir=state_dir,
        host=host,
        port=port,
        config_path=config_path,
        env=env,
        on_version_mismatch=on_version_mismatch,
        start_timeout=timeout,
    )
    with _managers_lock:
        kept = _managers.setdefault(manager.state_file, manager)
    if _start_options(kept) == _start_options(manager):
        manager = kept  # else: these options are checked against the running gateway too
    url = manager.ensure()
    if supervise:
        manager.supervise(supervise_interval)
    if stop_on_exit:
        manager.stop_on_exit()
    return url


def _start_options(manager: GatewayManager) -> tuple[Any, ...]:
    return (manager.host, manager.port, manager.config_path, manager.env, manager.check_config)
