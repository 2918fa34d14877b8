"""The `mini-llm` command line.

Exit statuses: 0 success, 1 failure (`serve`: also when a shared gateway already runs), 2 usage
or configuration error, 3 `status`: not running, 130 interrupted. With `--json`, a failure is
one JSON object on stdout, `{"error": {"message", "type", "code", "status"}}` (see `_fail`).
Imports are lazy so that `mini-llm --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from . import __version__

if TYPE_CHECKING:
    from .sdk.client import Client
    from .sdk.manager import GatewayManager
    from .sdk.state import GatewayState

__all__ = ["main"]

EXIT_FAILURE = 1
EXIT_CONFIG = 2
EXIT_NOT_RUNNING = 3


def _err(message: str) -> None:
    print(f"mini-llm: {message}", file=sys.stderr)


class _Failure(Exception):
    """A failure a command reports and exits with (see `_fail`)."""

    def __init__(
        self,
        message: str,
        type_: str,
        exit_code: int = EXIT_FAILURE,
        code: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.type = type_
        self.exit_code = exit_code
        self.code = code
        self.status = status


def _fail(args: argparse.Namespace, failure: _Failure) -> int:
    """Report a failure: a `mini-llm: ` line (or lines) on stderr, or with `--json` one object
    on stdout, `{"error": {"message", "type", "code", "status"}}`: `type` is one of
    `invalid_configuration`, `usage_error`, `gateway_start_failed`, `gateway_unreachable`,
    `gateway_timeout`, `version_mismatch`, `api_error`, `error`; `code` and `status` are the
    gateway's error code and HTTP status for an `api_error` (else null)."""
    if getattr(args, "json", False):
        error = {
            "message": failure.message,
            "type": failure.type,
            "code": failure.code,
            "status": failure.status,
        }
        _print_json({"error": error})
    else:
        _err(failure.message)
    return failure.exit_code


def _failure_of(error: Exception) -> _Failure:
    """The CLI's view of an exception of the SDK or of the configuration."""
    from .config import ConfigError
    from .sdk import errors

    if isinstance(error, (ConfigError, errors.GatewayConfigError)):
        return _Failure(str(error), "invalid_configuration", EXIT_CONFIG)
    if isinstance(error, errors.GatewayStartError):
        return _Failure(str(error), "gateway_start_failed")
    if isinstance(error, errors.GatewayVersionError):
        return _Failure(str(error), "version_mismatch")
    if isinstance(error, errors.APIConnectionError):
        # the SDK's hint speaks Python (`auto=True`); this is the command line
        type_ = (
            "gateway_timeout"
            if isinstance(error, errors.APITimeoutError)
            else ("gateway_unreachable")
        )
        hint = "`mini-llm start` starts the shared gateway; `mini-llm status` shows it"
        return _Failure(f"{error.message} ({hint})", type_)
    if isinstance(error, errors.APIStatusError):
        return _Failure(str(error), "api_error", code=error.code, status=error.status)
    return _Failure(str(error), "error")


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def _settings(args: argparse.Namespace, **flags: Any) -> Any:
    from .config import load_settings

    return load_settings(config_path=args.config, flags=flags)


def _manager(args: argparse.Namespace, **options: Any) -> GatewayManager:
    from .sdk.manager import GatewayManager

    return GatewayManager(state_dir=args.state_dir, **options)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    shown = [f"{n}{unit}" for n, unit in parts if n]
    return " ".join(shown[:2])


# serving


def _cmd_serve(args: argparse.Namespace) -> int:
    import errno
    import os
    import time

    from .config import ConfigError, exposure_warning
    from .gateway.server import BindError, run, url_for
    from .logs import setup_logging
    from .sdk.manager import running_gateway
    from .sdk.state import (
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
        _err(
            f"refusing to listen on {settings.host} without authentication: anyone who "
            "reaches it could spend your provider keys. Set a master key "
            "(MINI_LLM_MASTER_KEY=..., or [auth] master_key in mini-llm.toml) to turn auth "
            "on, bind 127.0.0.1, or pass --allow-unauthenticated if a proxy in front decides "
            "who gets in."
        )
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
    given = {"host": args.host, "port": args.port, "workers": args.workers}
    flags = {k: v for k, v in given.items() if v is not None and not (k == "workers" and v == 1)}
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
    from .config import ConfigError

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


# the background gateway


def _state_dict(state: GatewayState, **extra: Any) -> dict[str, Any]:
    return {
        "url": state.url,
        "pid": state.pid,
        "version": state.version,
        "started_at": state.started_at,
        **extra,
    }


def _start_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "host": args.host,
        "port": args.port,
        "config_path": args.config,
        "start_timeout": args.timeout,
    }


def _cmd_start(args: argparse.Namespace) -> int:
    from .config import exposure_warning

    # check_config: an invalid configuration is an error whether or not a gateway runs, and a
    # running one that differs is named in a warning (through the `mini_llm.sdk` logger)
    manager = _manager(args, check_config=True, **_start_options(args))
    state, started = manager.ensure_state()
    exposed = exposure_warning(state.host)
    if exposed:
        _err(exposed)
    if args.json:
        info = _state_dict(state, started=started, log_file=str(manager.log_file))
        _print_json({**info, "differences": manager.differences})
    elif started:
        print(f"mini-llm gateway started at {state.url} (pid {state.pid})")
    else:
        print(f"mini-llm gateway already running at {state.url} (pid {state.pid})")
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    manager = _manager(args, stop_grace=args.grace)
    state = manager.stop()
    if args.json:
        _print_json({"stopped": state is not None, "pid": state.pid if state else None})
    elif state is not None:
        print(f"mini-llm gateway stopped (pid {state.pid}, {state.url})")
    else:
        print("no mini-llm gateway is running")
    return 0


def _cmd_restart(args: argparse.Namespace) -> int:
    # the new gateway keeps the old one's address, configuration file and flags unless given
    # others; its keys come from this environment (a missing one is named in a warning)
    manager = _manager(args, **_start_options(args))
    state, replaced = manager.replace()
    if args.json:
        info = _state_dict(state, started=True, log_file=str(manager.log_file))
        _print_json({**info, "replaced_pid": replaced.pid if replaced else None})
    elif replaced is None:
        print(f"no mini-llm gateway was running; started one at {state.url} (pid {state.pid})")
    else:
        print(f"mini-llm gateway restarted at {state.url} (pid {state.pid}, was {replaced.pid})")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    status = _manager(args).status()
    info = status.to_dict()
    code = 0 if status.running else EXIT_NOT_RUNNING
    if args.json:
        _print_json(info)
        return code
    if not status.running:
        if status.state is not None:
            print(
                f"not running (the state file names pid {status.state.pid} at "
                f"{status.state.url}, which does not answer)"
            )
        else:
            print("not running")
        return code
    version = str(info["version"])
    if version != __version__:
        version += f" (this mini-llm is {__version__}; `mini-llm restart` upgrades it)"
    rows = [
        ("url", info["url"]),
        ("pid", info["pid"]),
        ("version", version),
        ("uptime", _duration(status.uptime_s or 0.0)),
        ("health", info["health"]),
        ("log", info["log_file"]),
    ]
    print("mini-llm gateway: running")
    for name, value in rows:
        print(f"  {name:<8} {value}")
    return code


def _tail(f: BinaryIO, end: int, lines: int) -> list[bytes]:
    """The last `lines` lines of an open file before offset `end`, reading only its end."""
    size = min(end, max(4096, lines * 200))
    while True:
        f.seek(end - size)
        data = f.read(size)
        found = data.splitlines(keepends=True)
        if len(found) > lines or size == end:
            return found[-lines:] if lines else []
        size = min(end, size * 2)


def _cmd_logs(args: argparse.Namespace) -> int:
    import time

    path = _manager(args).log_file
    if not path.exists():
        _err(f"no log yet ({path} does not exist); `mini-llm start` creates it")
        return EXIT_FAILURE
    out = sys.stdout.buffer
    # one handle for the tail and the follow: what is written after the tail was measured is
    # read by the follow, never lost between the two
    f = path.open("rb")
    end = f.seek(0, 2)
    for line in _tail(f, end, args.lines):
        out.write(line)
    out.flush()
    f.seek(end)
    if not args.follow:
        f.close()
        return 0
    try:
        while True:
            data = f.read(64 * 1024)
            if data:
                out.write(data)
                out.flush()
                continue
            try:
                if path.stat().st_size < f.tell() or path.stat().st_ino != _ino(f):
                    f.close()
                    f = path.open("rb")  # truncated or rotated: read the new file
            except OSError:
                pass
            time.sleep(0.2)
    except KeyboardInterrupt:
        return 0
    finally:
        f.close()


def _ino(f: Any) -> int:
    import os

    return os.fstat(f.fileno()).st_ino


# talking to the gateway


def _client(args: argparse.Namespace) -> Client:
    import os

    from .sdk.client import Client

    url = args.url or os.environ.get("MINI_LLM_BASE_URL")
    if not url:
        state, started = _manager(args).ensure_state()
        if started:
            _err(f"started the shared gateway at {state.url} (pid {state.pid}); `mini-llm stop`")
        url = state.url
    return Client(url, timeout=args.timeout)


def _read_prompt(args: argparse.Namespace) -> str:
    prompt: str | None = args.prompt
    if prompt is None or prompt == "-":
        if sys.stdin.isatty():
            print(
                "mini-llm: reading the prompt from standard input; end it with Ctrl-D",
                file=sys.stderr,
            )
        prompt = sys.stdin.read()
        # what `echo` and a heredoc add, not part of the prompt
        prompt = prompt[:-1] if prompt.endswith("\n") else prompt
        prompt = prompt[:-1] if prompt.endswith("\r") else prompt
    if not prompt.strip():
        raise _Failure(
            "the prompt is empty (give it as an argument, or on standard input)",
            "usage_error",
            EXIT_CONFIG,
        )
    return prompt


def _cmd_chat(args: argparse.Namespace) -> int:
    import msgspec

    prompt = _read_prompt(args)
    messages: list[dict[str, str]] = []
    if args.system:
        messages.append({"role": "system", "content": args.system})
    messages.append({"role": "user", "content": prompt})
    params: dict[str, Any] = {}
    if args.temperature is not None:
        params["temperature"] = args.temperature
    if args.max_tokens is not None:
        params["max_tokens"] = args.max_tokens

    with _client(args) as client:
        if not args.stream:
            completion = client.chat(args.model, messages, **params)
            if args.json:
                print(msgspec.json.encode(completion).decode())
            else:
                print(completion.text)
            return 0
        with client.stream(args.model, messages, **params) as stream:
            for chunk in stream:
                if args.json:
                    print(msgspec.json.encode(chunk).decode(), flush=True)
                else:
                    print(chunk.text, end="", flush=True)
        if not args.json:
            print()
    return 0


def _cmd_usage(args: argparse.Namespace) -> int:
    import asyncio
    import time

    from .config import ConfigError
    from .store import StoreError, open_store
    from .usage.report import parse_when, usage_report

    try:
        settings = _settings(args)
    except ConfigError as e:
        _err(str(e))
        return EXIT_CONFIG
    url = settings.store_url()
    if url is None:
        _err("no usage store: set MINI_LLM_DATA_DIR or MINI_LLM_DATABASE_URL")
        return EXIT_CONFIG
    now = time.time()
    try:
        since = parse_when(args.since, now)
        until = parse_when(args.until, now) if args.until else now
    except ValueError as e:
        _err(str(e))
        return EXIT_CONFIG

    async def read() -> dict[str, Any]:
        store = open_store(url)
        try:
            limit = args.limit if args.limit is not None else (100 if args.by == "request" else 0)
            return await usage_report(store, since, until, args.by, limit)
        finally:
            await store.close()

    try:
        report = asyncio.run(read())
    except StoreError as e:
        _err(f"cannot read the usage store: {e}")
        return EXIT_FAILURE
    if args.json:
        _print_json(report)
    elif args.csv:
        _print_csv(report)
    else:
        _print_usage(report)
    return 0


_USAGE_COLUMNS = (
    ("requests", "REQUESTS"),
    ("errors", "ERRORS"),
    ("input_tokens", "INPUT"),
    ("cached_input_tokens", "CACHED"),
    ("cache_write_tokens", "CACHE-WRITE"),
    ("output_tokens", "OUTPUT"),
    ("reasoning_tokens", "REASONING"),
    ("cost_usd", "COST $"),
    ("p50_ms", "P50 ms"),
    ("p95_ms", "P95 ms"),
)
_RECORD_COLUMNS = (
    ("time", "TIME"),
    ("request_id", "REQUEST"),
    ("endpoint", "ENDPOINT"),
    ("model", "MODEL"),
    ("status", "STATUS"),
    ("input_tokens", "INPUT"),
    ("cached_input_tokens", "CACHED"),
    ("cache_write_tokens", "CACHE-WRITE"),
    ("output_tokens", "OUTPUT"),
    ("cost_usd", "COST $"),
    ("latency_ms", "MS"),
)


def _cell(name: str, value: Any) -> str:
    if value is None:
        return "unpriced" if name == "cost_usd" else "-"
    if name == "cost_usd":
        return f"{value:.6f}"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def _table(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
        )


def _print_usage(report: dict[str, Any]) -> None:
    by = report["by"]
    print(f"usage {report['since']} .. {report['until']}, by {by}")
    if by == "request":
        columns = _RECORD_COLUMNS
        rows = [[h for _, h in columns]]
        rows += [[_cell(n, r.get(n)) for n, _ in columns] for r in report["rows"]]
        _table(rows)
        return
    rows = [[by.upper(), *(h for _, h in _USAGE_COLUMNS)]]
    for row in report["rows"]:
        cost = row["cost_usd"]
        cells = [_cell(n, row[n]) for n, _ in _USAGE_COLUMNS]
        if cost is not None and row["unpriced_requests"]:
            cells[7] += "+"  # some of it unpriced
        rows.append([str(row[by]), *cells])
    total = report["total"]
    rows.append(["total", *(_cell(n, total[n]) for n, _ in _USAGE_COLUMNS)])
    _table(rows)
    if report["unpriced_models"]:
        print(
            'unpriced (cost unknown, add [prices."provider/model"]): '
            + ", ".join(report["unpriced_models"])
        )
    if total["estimated_requests"]:
        print(f"{total['estimated_requests']} requests with estimated token counts")


def _print_csv(report: dict[str, Any]) -> None:
    import csv

    rows = report["rows"]
    writer = csv.writer(sys.stdout)
    if not rows:
        return
    names = list(rows[0])
    writer.writerow(names)
    for row in rows:
        writer.writerow(["" if row[n] is None else row[n] for n in names])


def _cmd_models(args: argparse.Namespace) -> int:
    import msgspec

    with _client(args) as client:
        models = client.models()
    if args.json:
        _print_json(msgspec.to_builtins(models))
        return 0
    if not models:
        print("no models configured (add providers or aliases; `mock/echo` is always there)")
        return 0
    width = max(len("MODEL"), *(len(m.id) for m in models))
    print(f"{'MODEL':<{width}}  OWNED BY")
    for model in models:
        print(f"{model.id:<{width}}  {model.owned_by}")
    return 0


def _cmd_providers_reset(args: argparse.Namespace) -> int:
    with _client(args) as client:
        restored = client.reset_providers(args.provider)
    if args.json:
        _print_json({"reset": restored})
        return 0
    if not restored:
        print("no such provider has keys" if args.provider else "no provider has keys")
        return 0
    for name, count in sorted(restored.items()):
        print(f"{name}: {count} key{'s' if count != 1 else ''} back in rotation")
    return 0


def _key_fields(args: argparse.Namespace) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name in ("name", "owner", "team", "rpm", "tpm", "max_concurrency", "budget_usd",
                 "budget_period", "expires_at"):  # fmt: skip
        value = getattr(args, name, None)
        if value is not None:
            fields[name] = value
    if getattr(args, "metadata", None) is not None:
        fields["metadata"] = json.loads(args.metadata)
    if getattr(args, "models", None) is not None:
        fields["models"] = [m.strip() for m in args.models.split(",") if m.strip()]
    if getattr(args, "enabled", None) is not None:
        fields["enabled"] = args.enabled == "true"
    if getattr(args, "signing", False):
        fields["signing"] = True
    return fields


def _cmd_keys(args: argparse.Namespace) -> int:
    import os
    import urllib.error
    import urllib.request

    master = os.environ.get("MINI_LLM_MASTER_KEY")
    if not master:
        _err("set MINI_LLM_MASTER_KEY to the gateway's master key")
        return EXIT_CONFIG
    base = args.url or os.environ.get("MINI_LLM_BASE_URL")
    if not base:
        with _client(args) as client:
            base = client.base_url
    base = base.rstrip("/")
    if base.endswith("/v1"):
        base = base[:-3]
    command = args.keys_command
    method, path, body = {
        "create": ("POST", "/admin/keys", _key_fields(args)),
        "list": ("GET", "/admin/keys", None),
        "show": ("GET", f"/admin/keys/{getattr(args, 'id', '')}", None),
        "update": ("PATCH", f"/admin/keys/{getattr(args, 'id', '')}", _key_fields(args)),
        "revoke": ("DELETE", f"/admin/keys/{getattr(args, 'id', '')}", None),
        "rotate": (
            "POST",
            f"/admin/keys/{getattr(args, 'id', '')}/rotate",
            {"grace_seconds": getattr(args, "grace", 3600.0)},
        ),
    }[command]
    request = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Authorization": f"Bearer {master}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as e:
        try:
            message = json.loads(e.read())["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = str(e)
        _err(f"{e.code}: {message}")
        return EXIT_FAILURE
    except OSError as e:
        _err(f"cannot reach the gateway at {base}: {e}")
        return EXIT_FAILURE
    if args.json:
        _print_json(answer)
        return 0
    rows = answer["data"] if command == "list" else [answer]
    if command == "revoke":
        print(f"revoked {answer['id']}")
        return 0
    columns = ("id", "last4", "name", "owner", "models", "rpm", "tpm", "max_concurrency",
               "budget_usd", "budget_period", "expires_at", "enabled")  # fmt: skip
    table = [[_key_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in table)) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)))
    for r in table:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))
    if "usage" in answer:
        print("usage: " + ", ".join(f"{k} {v}" for k, v in answer["usage"].items()))
    if "key" in answer:
        print(f"\nkey: {answer['key']}  (shown once: keep it now)")
    if "signing_secret" in answer:
        print(f"signing secret: {answer['signing_secret']}  (shown once)")
    return 0


def _key_cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


# the parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def _seconds(text: str, zero: bool = False) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, not {text!r}") from None
    if not (value >= 0 if zero else value > 0) or value == float("inf"):
        least = "0 or more" if zero else "more than 0"
        raise argparse.ArgumentTypeError(f"must be {least} seconds, not {text}")
    return value


def _grace(text: str) -> float:
    return _seconds(text, zero=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mini-llm",
        description="A small, fast LLM gateway (OpenAI and Anthropic APIs), shared by every "
        "process of this user on this machine.",
    )
    parser.add_argument("--version", action="version", version=f"mini-llm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def with_config(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--config", metavar="FILE", help="mini-llm.toml to read (default: $MINI_LLM_CONFIG)"
        )

    def with_state_dir(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--state-dir",
            metavar="DIR",
            help="where the state, lock and log files live (default: $MINI_LLM_STATE_DIR, "
            "else $XDG_RUNTIME_DIR/mini-llm)",
        )

    def with_json(p: argparse.ArgumentParser) -> None:
        p.add_argument("--json", action="store_true", help="print JSON, for scripts")

    def with_address(p: argparse.ArgumentParser) -> None:
        p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
        p.add_argument(
            "--port",
            type=int,
            help="port (default 3333, and the next ones when it is taken; a port given here "
            "is bound or the start fails; 0 lets the OS choose)",
        )

    def with_url(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--url",
            help="gateway base URL (default: $MINI_LLM_BASE_URL, else the shared gateway, "
            "started if needed)",
        )
        p.add_argument(
            "--timeout",
            type=_seconds,
            default=600.0,
            metavar="SECONDS",
            help="seconds to wait for the gateway's answer (default %(default)g)",
        )

    start = sub.add_parser("start", help="start the shared gateway in the background")
    with_address(start)
    with_config(start)
    start.add_argument(
        "--timeout",
        type=_seconds,
        default=20.0,
        metavar="SECONDS",
        help="seconds to wait for it to be ready (default %(default)g)",
    )
    with_state_dir(start)
    with_json(start)
    start.set_defaults(func=_cmd_start)

    stop = sub.add_parser("stop", help="stop the shared gateway (SIGTERM, then SIGKILL)")
    stop.add_argument(
        "--grace",
        type=_grace,
        default=None,
        metavar="SECONDS",
        help="SIGKILL after at most this long (default: the gateway's own drain time, "
        "shutdown_grace, plus 5 s: 35 s unless configured)",
    )
    with_state_dir(stop)
    with_json(stop)
    stop.set_defaults(func=_cmd_stop)

    restart = sub.add_parser(
        "restart", help="stop and start the shared gateway (same address unless given)"
    )
    with_address(restart)
    with_config(restart)
    restart.add_argument(
        "--timeout",
        type=_seconds,
        default=20.0,
        metavar="SECONDS",
        help="seconds to wait for the new one to be ready (default %(default)g)",
    )
    with_state_dir(restart)
    with_json(restart)
    restart.set_defaults(func=_cmd_restart)

    status = sub.add_parser(
        "status", help="is the shared gateway running? (exit 0 running, 3 not running)"
    )
    with_state_dir(status)
    with_json(status)
    status.set_defaults(func=_cmd_status)

    logs = sub.add_parser("logs", help="show the shared gateway's log")
    logs.add_argument(
        "-n",
        "--lines",
        type=_count,
        default=50,
        metavar="N",
        help="how many last lines, 0 or more (default 50)",
    )
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing until Ctrl-C")
    with_state_dir(logs)
    logs.set_defaults(func=_cmd_logs)

    chat = sub.add_parser("chat", help="send one prompt and print the answer")
    chat.add_argument(
        "prompt",
        nargs="?",
        help="the prompt ('-' or nothing: read standard input, one trailing newline dropped)",
    )
    chat.add_argument("-m", "--model", required=True, help="model, e.g. mock/echo")
    chat.add_argument("--system", help="a system message")
    chat.add_argument("--stream", action="store_true", help="print the answer as it arrives")
    chat.add_argument(
        "--temperature",
        type=float,
        metavar="T",
        help="sampling temperature, e.g. 0 to 2 (default: the model's own)",
    )
    chat.add_argument(
        "--max-tokens",
        type=_positive_int,
        metavar="N",
        help="at most this many tokens in the answer (default: the model's own limit)",
    )
    with_url(chat)
    with_state_dir(chat)
    with_json(chat)
    chat.set_defaults(func=_cmd_chat)

    models = sub.add_parser("models", help="list the models the gateway offers")
    with_url(models)
    with_state_dir(models)
    with_json(models)
    models.set_defaults(func=_cmd_models)

    providers = sub.add_parser("providers", help="the gateway's providers and their keys")
    providers_sub = providers.add_subparsers(dest="providers_command", metavar="COMMAND")
    providers_sub.required = True
    reset = providers_sub.add_parser(
        "reset",
        help="bring keys that were set aside (HTTP 401/403) or cool down back at once",
    )
    reset.add_argument("provider", nargs="?", help="only this provider (default: all)")
    with_url(reset)
    with_state_dir(reset)
    with_json(reset)
    reset.set_defaults(func=_cmd_providers_reset)

    usage = sub.add_parser(
        "usage", help="what was spent, on what, how fast (from the usage ledger)"
    )
    usage.add_argument("--since", default="24h", help="24h, 7d, 30m, a date or date-time")
    usage.add_argument("--until", default=None, help="same forms as --since (default: now)")
    usage.add_argument(
        "--by",
        default="model",
        choices=("model", "provider", "key", "day", "hour", "request"),
        help="group by (request: the records themselves, newest first)",
    )
    usage.add_argument("--limit", type=int, default=None, help="rows at most")
    shape = usage.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="JSON, as GET /admin/usage")
    shape.add_argument("--csv", action="store_true", help="CSV")
    with_config(usage)
    usage.set_defaults(func=_cmd_usage)

    serve = sub.add_parser("serve", help="run the gateway in the foreground")
    with_address(serve)
    serve.add_argument(
        "--workers",
        type=_positive_int,
        metavar="N",
        help="worker processes sharing the port with SO_REUSEPORT (default 1, or "
        "$MINI_LLM_WORKERS; about one per core)",
    )
    published = serve.add_mutually_exclusive_group()
    published.add_argument(
        "--state-file",
        metavar="FILE",
        help="publish pid, address and version here once listening, as the caller holds the "
        "lock (what `start` uses)",
    )
    published.add_argument(
        "--no-state",
        action="store_true",
        help="a private gateway: do not publish it as the shared one (by default it is, and "
        "serve refuses to start, exit 1, when a shared one already runs)",
    )
    serve.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        help="listen on a non-loopback address without a master key (only behind a proxy "
        "that decides who gets in)",
    )
    with_config(serve)
    with_state_dir(serve)
    serve.set_defaults(func=_cmd_serve)

    keys = sub.add_parser(
        "keys",
        help="gateway keys: create, list, show, update, revoke, rotate (needs "
        "MINI_LLM_MASTER_KEY; talks to $MINI_LLM_BASE_URL, else the shared gateway)",
    )
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="COMMAND", required=True)

    def key_fields(p: argparse.ArgumentParser, creating: bool) -> None:
        p.add_argument("--name", required=creating)
        p.add_argument("--owner")
        p.add_argument("--team")
        p.add_argument("--metadata", metavar="JSON", help="a JSON object")
        p.add_argument("--models", metavar="LIST", help="comma-separated names or globs")
        p.add_argument("--rpm", type=_positive_int)
        p.add_argument("--tpm", type=_positive_int)
        p.add_argument("--max-concurrency", type=_positive_int)
        p.add_argument("--budget-usd", type=float)
        p.add_argument("--budget-period", choices=("day", "week", "month", "total"))
        p.add_argument("--expires-at", metavar="RFC3339")
        if creating:
            p.add_argument("--signing", action="store_true", help="make a signing secret too")
        else:
            p.add_argument("--enabled", choices=("true", "false"))

    for name, helptext in (
        ("create", "create a key (shown once)"),
        ("list", "list the keys"),
        ("show", "one key, with its usage and spend"),
        ("update", "change a key's fields"),
        ("revoke", "revoke a key (refused at once)"),
        ("rotate", "a new secret for a key (the old one works --grace seconds more)"),
    ):
        p = keys_sub.add_parser(name, help=helptext)
        if name not in ("create", "list"):
            p.add_argument("id")
        if name in ("create", "update"):
            key_fields(p, name == "create")
        if name == "rotate":
            p.add_argument("--grace", type=_grace, default=3600.0, metavar="SECONDS")
        with_url(p)
        with_state_dir(p)
        with_json(p)
        p.set_defaults(func=_cmd_keys)

    reload = sub.add_parser(
        "reload",
        help="make the shared gateway read its configuration again (SIGHUP); an invalid one "
        "is refused and logged",
    )
    with_state_dir(reload)
    reload.set_defaults(func=_cmd_reload)

    config = sub.add_parser("config", help="inspect the configuration")
    config_sub = config.add_subparsers(dest="config_command", metavar="COMMAND")
    check = config_sub.add_parser(
        "check",
        help="print each effective value and where it came from (default, file, variable, "
        "flag), keys masked; exit 2 on problems",
    )
    with_config(check)
    with_json(check)
    check.set_defaults(func=_cmd_config_check)

    def config_help(args: argparse.Namespace) -> int:
        config.print_usage(sys.stderr)
        _err("config: a subcommand is needed (check)")
        return EXIT_CONFIG

    config.set_defaults(func=config_help)
    return parser


def _show_sdk_warnings() -> None:
    """The manager's warnings (another version, another configuration, a missing key) as
    `mini-llm: warning: ...` lines on stderr."""
    import logging

    logger = logging.getLogger("mini_llm.sdk")
    if any(getattr(h, "mini_llm_cli", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("mini-llm: warning: %(message)s"))
    handler.setLevel(logging.WARNING)
    handler.mini_llm_cli = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    from .config import ConfigError
    from .sdk.errors import MiniLLMError

    if func is not _cmd_serve:
        _show_sdk_warnings()
    try:
        result: int = func(args)
    except _Failure as e:
        return _fail(args, e)
    except (MiniLLMError, ConfigError) as e:
        return _fail(args, _failure_of(e))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_FAILURE
    return result
