"""Instructions per request: the gateway's user-space work counted by callgrind, a figure that
other load on the machine does not move (`bench/run.py`'s CPU time does, by a third at times).

    python bench/instructions.py                      # the translated rows and their pass-throughs
    python bench/instructions.py --only responses-to-anthropic-stream --seconds 8

One gateway runs under `valgrind --tool=callgrind` with counting off; for each scenario it is
warmed up, then counted for a bounded `wrk -c2` run and the count dumped (`callgrind_control`),
so each figure is that scenario's requests only: no start-up, no warm-up. Kernel time (the
socket writes) is not counted: a row that writes more bytes costs a little more CPU time than
its instructions say. Loopback only; every run bounded; the processes started here are
stopped by their pid. Results: a table here and `results/instructions.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import LOAD_CPU, PY, gateway_env, selected
from scenarios import SCENARIOS, Scenario

from harness import BENCH, REPO, Server, clean_env, start_server, wrk, wrk_binary

_TOTALS = re.compile(rb"^totals: (\d+)", re.MULTILINE)  # (a dump's `summary:` may say 0)
# the rows whose figure is a ratio to a pass-through of the same gateway (with no feature on)
DEFAULT = [s.name for s in SCENARIOS if s.passthrough and not s.env and not s.access]


def valgrind_binaries() -> tuple[str, str]:
    """`valgrind` and `callgrind_control`, installed from Debian when missing."""
    if not shutil.which("valgrind"):
        print("valgrind is missing: apt-get install -y valgrind", file=sys.stderr)
        if subprocess.run(["apt-get", "install", "-y", "valgrind"], capture_output=True).returncode:
            subprocess.run(["apt-get", "update"], capture_output=True, check=False)
            subprocess.run(["apt-get", "install", "-y", "valgrind"], capture_output=True)
    valgrind, control = shutil.which("valgrind"), shutil.which("callgrind_control")
    if not valgrind or not control:
        raise SystemExit("valgrind (callgrind) is needed and could not be installed")
    return valgrind, control


class Counted:
    """The gateway under callgrind, counting only between `count` calls' start and end."""

    def __init__(self, server: Server, control: str, out: Path) -> None:
        self.server, self.control, self.out = server, control, out

    def _control(self, *args: str) -> None:
        pid = str(self.server.proc.pid)
        subprocess.run([self.control, *args, pid], capture_output=True, check=True, timeout=60)

    def warm(self, scenario: Scenario, seconds: float, body_dir: Path) -> None:
        """Uncounted requests: what runs once (imports, first-time paths) runs here."""
        wrk(self.server.port, scenario.request, 2, seconds, LOAD_CPU, body_dir)

    def count(self, scenario: Scenario, seconds: float, body_dir: Path) -> dict[str, Any]:
        port, request = self.server.port, scenario.request
        before = set(self.out.parent.glob(self.out.name + "*"))
        self._control("-i", "on")
        result = wrk(port, request, 2, seconds, LOAD_CPU, body_dir)
        self._control("-i", "off")
        self._control("-d")
        dumps = set(self.out.parent.glob(self.out.name + "*")) - before
        total = sum(int(m.group(1)) for d in dumps for m in [_TOTALS.search(d.read_bytes())] if m)
        requests, errors = result["requests"], sum(result["errors"].values())
        if not requests or errors:
            raise RuntimeError(f"{scenario.name}: {requests} requests, {errors} errors")
        return {"requests": requests, "instructions_per_req": round(total / requests)}


def measure(names: list[str], seconds: float, src: Path) -> dict[str, Any]:
    valgrind, control = valgrind_binaries()
    wrk_binary()
    rows = selected(set(names))
    skipped = [s.name for s in rows if s.env or s.access]
    rows = [s for s in rows if not s.env and not s.access and s.name in set(names) | _bases(rows)]
    work = Path(tempfile.mkdtemp(prefix="bench-instructions-"))
    out = work / "callgrind.out"
    mock = start_server("mock", [PY, str(BENCH / "mock_upstream.py")], LOAD_CPU, clean_env())
    gateway: Server | None = None
    figures: dict[str, Any] = {}
    try:
        env = gateway_env(mock.port, work, src)
        cmd = [valgrind, "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]
        cmd += [PY, "-m", "mini_llm", "serve", "--host", "127.0.0.1", "--port", "0"]
        gateway = start_server("gateway", cmd, "1", env, timeout=300)
        counted = Counted(gateway, control, out)
        for scenario in rows:  # every row warmed before any is counted
            counted.warm(scenario, max(2.0, seconds / 2), work)
        for scenario in rows:
            figures[scenario.name] = counted.count(scenario, seconds, work)
            print(f"  {scenario.name}: {figures[scenario.name]}", file=sys.stderr)
    finally:
        if gateway is not None:
            gateway.stop()
        mock.stop()
        shutil.rmtree(work, ignore_errors=True)
    for scenario in rows:
        base = figures.get(scenario.passthrough or "")
        if base is not None:
            ratio = figures[scenario.name]["instructions_per_req"] / base["instructions_per_req"]
            figures[scenario.name]["ratio_to_passthrough"] = round(ratio, 3)
            figures[scenario.name]["passthrough"] = scenario.passthrough
    return {"seconds": seconds, "rows": figures, "skipped (env or access)": skipped}


def _bases(rows: list[Scenario]) -> set[str]:
    return {s.passthrough for s in rows if s.passthrough}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(DEFAULT), help="scenario names, comma-separated")
    parser.add_argument("--seconds", type=float, default=6.0, help="counted seconds per row")
    parser.add_argument("--src", default=str(REPO / "src"), help="the source to measure")
    parser.add_argument("--out", default=str(BENCH / "results"), help="results folder")
    args = parser.parse_args()
    started = time.monotonic()
    results = measure([n for n in args.only.split(",") if n], args.seconds, Path(args.src))
    results["commit"] = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    results["wall_seconds"] = round(time.monotonic() - started, 1)
    print(f"{'scenario':42} {'requests':>9} {'instr/req':>11} {'ratio':>7}  pass-through")
    for name, row in results["rows"].items():
        ratio = row.get("ratio_to_passthrough")
        shown = f"{ratio:7.3f}" if ratio is not None else "       "
        print(
            f"{name:42} {row['requests']:9} {row['instructions_per_req']:11,} {shown}"
            f"  {row.get('passthrough', '')}"
        )
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "instructions.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    os.chdir(REPO)
    raise SystemExit(main())
