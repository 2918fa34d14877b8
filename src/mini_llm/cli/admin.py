"""`mini-llm usage`, `keys` and `providers reset`: the commands that read reports from the
gateway or administer it."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .common import EXIT_CONFIG, EXIT_FAILURE, _client, _err, _print_json, _settings


def _cmd_usage(args: argparse.Namespace) -> int:
    import asyncio
    import time

    from ..config import ConfigError
    from ..store import StoreError, open_store
    from ..usage.report import parse_when, usage_report

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
    if "spend_since" in answer:
        spend = answer.get("spend_usd")
        shown = "unknown (no usage ledger)" if spend is None else f"${spend:.6f}"
        print(f"spend: {shown} since {answer['spend_since']}")
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
