"""`mini-llm serve`, `config check` and `reload`: the gateway in the foreground, and its
configuration."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .. import __version__
from .common import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    _err,
    _manager,
    _print_json,
    _settings,
    _unauthenticated_refusal,
)


def _cmd_serve(args: argparse.Namespace) -> int:
    import errno
    import os
    import time

    from ..config import ConfigError, exposure_warning
    from ..gateway.server import BindError, run, url_for
    from ..logs import setup_logging
    from ..sdk.manager import running_gateway
    from ..sdk.state import (
        STATE_FILE,
        GatewayState,
        acquire_lock,
        default_state_dir,
        release_lock,
        remove_state_if_pid,
        write_state,
    )

    try:
        settings = _settings(args, host=args.host, port=args.port, workers=args.workers)
    except ConfigError as e:
        _err(str(e))
        return EXIT_CONFIG
    setup_logging(settings.log_level)
    for warning in settings.warnings:
        print(f"mini-llm: warning: {warning}", file=sys.stderr)
    exposed = exposure_warning(settings.host) if not settings.master_key else None
    if exposed and not args.allow_unauthenticated:
        _err(_unauthenticated_refusal(settings.host))
        return EXIT_CONFIG
    if exposed:
        _err(exposed)
    # Publishing: `--state-file` is how `start` and the SDK spawn a gateway (they hold the lock
    # while it starts); without it, a foreground gateway is the shared one too, published in
    # the shared state file under the lock, unless `--no-state`.
    lock_fd: int | None = None
    state_file: Path | None = None
    if args.state_file:
        state_file = Path(args.state_file).absolute()
    elif not args.no_state:
        state_dir = Path(args.state_dir) if args.state_dir else default_state_dir()
        state_file = state_dir.absolute() / STATE_FILE
        try:
            lock_fd = acquire_lock(state_file.with_name("gateway.lock"), 30.0)
        except TimeoutError as e:
            _err(str(e))
            return EXIT_FAILURE
    if state_file is not None:
        found = running_gateway(state_file)
        if found is not None:
            if lock_fd is not None:
                release_lock(lock_fd)
            running = found[0]
            _err(
                f"the shared gateway already runs at {running.url} (pid {running.pid}; "
                f"state file {state_file}): one per user. Use it, stop it with "
                "`mini-llm stop`, or serve a private one with --no-state"
            )
            return EXIT_FAILURE

    def unlock() -> None:
        nonlocal lock_fd
        if lock_fd is not None:
            release_lock(lock_fd)
            lock_fd = None

    config_path = str(Path(settings.config_path).absolute()) if settings.config_path else None
    # the number of workers run (`auto` resolved): what a restart starts again
    workers = settings.workers if args.workers is not None else None
    given = {"host": args.host, "port": args.port, "workers": workers}
    flags = {k: v for k, v in given.items() if v is not None and not (k == "workers" and v == 1)}
    if exposed and args.allow_unauthenticated:
        flags["allow_unauthenticated"] = True  # a restart exposes it the same way, knowingly
    # the names of the variables the keys came from, never a key
    key_env = sorted(
        {p.key_env for p in settings.providers.values() if p.keys and os.environ.get(p.key_env)}
    )

    def ready(host: str, port: int) -> None:
        if settings.port not in (0, port):
            print(f"mini-llm: port {settings.port} is in use; bound {port} instead", flush=True)
        print(f"mini-llm {__version__} listening on {url_for(host, port)}", flush=True)
        if state_file is not None:
            # published only now that the socket is bound: a reader never sees a port that
            # is not listening yet
            reachable = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
            state = GatewayState(
                pid=os.getpid(),
                host=host,
                port=port,
                url=url_for(reachable, port),
                version=__version__,
                started_at=time.time(),
                config_path=config_path,
                flags=flags,
                key_env=tuple(key_env),
                config_fingerprint=settings.fingerprint(),
            )
            write_state(state_file, state)
            unlock()  # published: whoever waited for the lock now finds this gateway

    try:
        run(settings, ready=ready, workers=settings.workers)
    except BindError as e:
        _err(str(e))
        # a port in use is a choice to change (--port), like a configuration error
        return EXIT_CONFIG if e.errno == errno.EADDRINUSE else EXIT_FAILURE
    except OSError as e:
        where = f" (state file {state_file})" if state_file is not None else ""
        _err(f"the gateway stopped: {e}{where}")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        pass
    finally:
        unlock()
        if state_file is not None:
            remove_state_if_pid(state_file, os.getpid())
    return 0


def _cmd_config_check(args: argparse.Namespace) -> int:
    from ..config import ConfigError

    try:
        settings = _settings(args)
    except ConfigError as e:
        _err(str(e))
        return EXIT_CONFIG
    if args.json:
        _print_json(settings.describe())
    else:
        where = settings.config_path or "no config file"
        print(f"configuration: {where} (fingerprint {settings.fingerprint()})")
        rows = [
            (e.name, _shown(e.value), e.source, "live" if e.reloadable else "restart")
            for e in settings.effective()
        ]
        rows.insert(0, ("SETTING", "VALUE", "FROM", "CHANGES"))
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        for name, value, source, changes in rows:
            print(f"{name:<{widths[0]}}  {value:<{widths[1]}}  {source:<{widths[2]}}  {changes}")
    for warning in settings.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _cmd_reload(args: argparse.Namespace) -> int:
    import os
    import signal

    manager = _manager(args)
    state = manager.find()  # alive, and /health answers with its pid: our gateway
    if state is None:
        _err(f"no mini-llm gateway is running (looked in {manager.state_file}); nothing to reload")
        return EXIT_FAILURE
    try:
        os.kill(state.pid, signal.SIGHUP)
    except OSError as e:
        _err(f"cannot signal the gateway (pid {state.pid}): {e.strerror}")
        return EXIT_FAILURE
    print(
        f"asked the gateway at {state.url} (pid {state.pid}) to reload its configuration; "
        f"it keeps the old one if the new one has problems, listed in its log "
        f"({manager.log_file} when started by `mini-llm start`)"
    )
    return 0
