"""The `mini-llm` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from . import __version__

__all__ = ["main"]

EXIT_CONFIG = 2


def _err(message: str) -> None:
    print(f"mini-llm: {message}", file=sys.stderr)


def _settings(args: argparse.Namespace, **flags: Any) -> Any:
    from .config import load_settings

    return load_settings(config_path=args.config, flags=flags)


def _cmd_serve(args: argparse.Namespace) -> int:
    from .config import ConfigError
    from .gateway.server import BindError, run, url_for
    from .logs import setup_logging

    try:
        settings = _settings(args, host=args.host, port=args.port)
    except ConfigError as e:
        _err(str(e))
        return EXIT_CONFIG
    setup_logging(settings.log_level)
    for warning in settings.warnings:
        print(f"mini-llm: warning: {warning}", file=sys.stderr)

    def ready(host: str, port: int) -> None:
        if settings.port not in (0, port):
            print(f"mini-llm: port {settings.port} is in use; bound {port} instead", flush=True)
        print(f"mini-llm {__version__} listening on {url_for(host, port)}", flush=True)

    try:
        run(settings, ready=ready, workers=args.workers)
    except BindError as e:
        _err(str(e))
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def _cmd_config_check(args: argparse.Namespace) -> int:
    from .config import ConfigError

    try:
        settings = _settings(args)
    except ConfigError as e:
        _err(str(e))
        return EXIT_CONFIG
    print(json.dumps(settings.describe(), indent=2, ensure_ascii=False))
    for warning in settings.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mini-llm", description="A small, fast LLM gateway (OpenAI and Anthropic APIs)."
    )
    parser.add_argument("--version", action="version", version=f"mini-llm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def with_config(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--config", metavar="FILE", help="mini-llm.toml to read (default: $MINI_LLM_CONFIG)"
        )

    serve = sub.add_parser("serve", help="run the gateway in the foreground")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument(
        "--port", type=int, help="port (default 3333; 0 lets the OS choose; taken: next ones)"
    )
    serve.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        metavar="N",
        help="worker processes sharing the port with SO_REUSEPORT (default 1; about one per core)",
    )
    with_config(serve)
    serve.set_defaults(func=_cmd_serve)

    config = sub.add_parser("config", help="inspect the configuration")
    config_sub = config.add_subparsers(dest="config_command", metavar="COMMAND")
    check = config_sub.add_parser(
        "check", help="print the effective configuration, keys masked; exit 2 on problems"
    )
    with_config(check)
    check.set_defaults(func=_cmd_config_check)

    def config_help(args: argparse.Namespace) -> int:
        config.print_help()
        return 2

    config.set_defaults(func=config_help)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    result: int = func(args)
    return result
