"""What every `mini-llm` command shares: exit statuses, one-line and JSON errors, the
settings, the manager and the client of the gateway."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..sdk.client import Client
    from ..sdk.manager import GatewayManager

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
    from ..config import ConfigError
    from ..sdk import errors

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
    from ..config import load_settings

    return load_settings(config_path=args.config, flags=flags)


def _unauthenticated_refusal(host: str) -> str:
    """Why a gateway will not listen on `host` without auth, and what to do about it."""
    return (
        f"refusing to listen on {host} without authentication: anyone who "
        "reaches it could spend your provider keys. Set a master key "
        "(MINI_LLM_MASTER_KEY=..., or [auth] master_key in mini-llm.toml) to turn auth "
        "on, bind 127.0.0.1, or pass --allow-unauthenticated if a proxy in front decides "
        "who gets in."
    )


def _manager(args: argparse.Namespace, **options: Any) -> GatewayManager:
    from ..sdk.manager import GatewayManager

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


def _client(args: argparse.Namespace) -> Client:
    import os

    from ..sdk.client import Client

    url = args.url or os.environ.get("MINI_LLM_BASE_URL")
    if not url:
        state, started = _manager(args).ensure_state()
        if started:
            _err(f"started the shared gateway at {state.url} (pid {state.pid}); `mini-llm stop`")
        url = state.url
    return Client(url, timeout=args.timeout)
