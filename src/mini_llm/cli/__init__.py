"""The `mini-llm` command line.

Exit statuses: 0 success, 1 failure (`serve`: also when a shared gateway already runs), 2 usage
or configuration error, 3 `status`: not running, 130 interrupted. With `--json`, a failure is
one JSON object on stdout, `{"error": {"message", "type", "code", "status"}}` (see `_fail`).
Imports are lazy so that `mini-llm --help` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, BinaryIO

from .. import __version__

if TYPE_CHECKING:
    from ..sdk.state import GatewayState

__all__ = ["main"]


from .admin import _cmd_keys, _cmd_providers_reset, _cmd_usage
from .common import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_NOT_RUNNING,
    _client,
    _duration,
    _err,
    _fail,
    _Failure,
    _failure_of,
    _manager,
    _print_json,
    _settings,
    _unauthenticated_refusal,
)
from .serving import _cmd_config_check, _cmd_reload, _cmd_serve

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
    from ..config import ConfigError, exposure_warning

    try:
        asked = _settings(args, host=args.host, port=args.port)
    except ConfigError:
        asked = None  # reported by the manager's check below, as every command reports it
    if (
        asked is not None
        and not asked.master_key
        and exposure_warning(asked.host)
        and not args.allow_unauthenticated
    ):
        _err(_unauthenticated_refusal(asked.host))
        return EXIT_CONFIG
    # check_config: an invalid configuration is an error whether or not a gateway runs, and a
    # running one that differs is named in a warning (through the `mini_llm.sdk` logger)
    manager = _manager(
        args,
        check_config=True,
        allow_unauthenticated=args.allow_unauthenticated,
        **_start_options(args),
    )
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


# the parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _workers(text: str) -> int | str:
    """A number of workers, or `auto` (resolved by the settings row, like the variable)."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return _positive_int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number or auto, not {text!r}") from None


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
    start.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        help="listen on a non-loopback address without a master key (only behind a proxy "
        "that decides who gets in)",
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
        type=_workers,
        metavar="N|auto",
        help="worker processes sharing the port with SO_REUSEPORT (default 1, or "
        "$MINI_LLM_WORKERS; about one per core; auto: one per CPU available)",
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
    from ..config import ConfigError
    from ..sdk.errors import MiniLLMError

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
