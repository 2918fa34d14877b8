"""mini-llm's benchmark: the gateway against a minimal aiohttp proxy (the floor), in one run.

    python bench/run.py            # full run, about 8 minutes
    python bench/run.py --quick    # about 2 minutes

The gateway is pinned alone on CPU 1; the mock upstream, wrk and this script share CPU 0.
Loopback only; every load run is bounded in time. Results: a table here, JSON and a PNG plot
in bench/results/. See bench/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from access import start_redis, stop_redis, with_gateway_key
from scenarios import BENCH_MASTER_KEY, SCENARIOS, Scenario

from harness import (
    BENCH,
    REPO,
    Request,
    Server,
    clean_env,
    command_seconds,
    first_chunk_times,
    free_port,
    load_run,
    memory_mb,
    post_once,
    start_server,
    startup_seconds,
    wrk_binary,
)

GATEWAY_CPU = "1"
LOAD_CPU = "0"
BOTH_CPUS = "0,1"
CONCURRENCY = (1, 16, 64)
HEADLINE_C = 16
PY = sys.executable


@dataclass
class Plan:
    quick: bool
    seconds: float
    warmup: float
    ttfc_count: int
    startup_repeat: int
    command_repeat: int
    source: str
    rounds: int

    @classmethod
    def make(cls, quick: bool, source: str) -> Plan:
        if quick:
            return cls(quick, 2, 1, 40, 2, 3, source, 1)
        return cls(quick, 4, 2, 200, 5, 7, source, 3)


def gateway_env(mock_port: int, data_dir: Path, src: Path) -> dict[str, str]:
    upstream = f"http://127.0.0.1:{mock_port}"
    return clean_env(
        PYTHONPATH=str(src),
        MINI_LLM_LOG_LEVEL="warning",
        MINI_LLM_USAGE="false",
        MINI_LLM_METRICS="false",
        OPENAI_BASE_URL=upstream + "/v1",
        OPENAI_API_KEY="sk-bench-openai",
        ANTHROPIC_BASE_URL=upstream,
        ANTHROPIC_API_KEY="sk-ant-bench",
        XDG_DATA_HOME=str(data_dir),
        XDG_STATE_HOME=str(data_dir),
        XDG_CONFIG_HOME=str(data_dir),
    )


def export_source(ref: str, into: Path) -> Path:
    """`src/` as committed at `ref`, so that the figures belong to a commit, not to whatever
    the shared checkout holds at the moment."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", ref, "src"], cwd=REPO, capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into / "src"


def _spec(name: str) -> Scenario:
    return next(s for s in SCENARIOS if s.name == name)


def selected(only: set[str]) -> list[Scenario]:
    """The scenarios named (all when none is), with those they are compared to."""
    if not only:
        return SCENARIOS
    wanted = set(only)
    for scenario in SCENARIOS:
        if scenario.name in only:
            wanted.update(n for n in (scenario.floor, scenario.passthrough) if n)
    return [s for s in SCENARIOS if s.name in wanted]


def gateway_cmd(port: int = 0, workers: int = 1) -> list[str]:
    cmd = [PY, "-m", "mini_llm", "serve", "--host", "127.0.0.1", "--port", str(port)]
    return [*cmd, "--workers", str(workers)] if workers > 1 else cmd


def floor_cmd(mock_port: int, port: int = 0) -> list[str]:
    upstream = f"http://127.0.0.1:{mock_port}"
    return [PY, str(BENCH / "floor_proxy.py"), "--upstream", upstream, "--port", str(port)]


_CACHE_MEMORY = """
import json, sys, tracemalloc, asyncio
from mini_llm.cache import MemoryCache
answer = json.loads(sys.argv[1])
count = 20000
store = MemoryCache(2**40)
tracemalloc.start()
async def fill():
    for i in range(count):
        await store.put(f"{i:064x}", answer, 3600)
asyncio.run(fill())
held = tracemalloc.get_traced_memory()[0]
size = len(json.dumps(answer, separators=(",", ":")))
print(json.dumps({"answers": count, "answer_json_bytes": size,
                  "counted_bytes_per_answer": round(store.size / count),
                  "heap_bytes_per_answer": round(held / count)}))
"""


def cache_memory(env: dict[str, str]) -> dict[str, Any]:
    """Memory per cached answer in the memory cache: 20,000 answers of the benchmark's size
    (the mock upstream's chat answer), as counted against max_bytes and as traced on the
    heap."""
    log("cache memory per answer")
    answer = {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello benchmark! " * 6},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 25, "completion_tokens": 20, "total_tokens": 45},
    }
    done = subprocess.run(
        [PY, "-c", _CACHE_MEMORY, json.dumps(answer)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    figures: dict[str, Any] = json.loads(done.stdout)
    log(f"  {figures}")
    return figures


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- the run -------------------------------------------------------------------------------


class Bench:
    def __init__(self, plan: Plan, work: Path, src: Path) -> None:
        self.plan = plan
        self.work = work
        self.src = src
        self.results: dict[str, Any] = {"scenarios": {}, "notes": []}
        self.mock: Server | None = None
        self.only: set[str] = set()

    def note(self, text: str) -> None:
        log("note: " + text)
        self.results["notes"].append(text)

    def load(self, server: Server, request: Request, conns: int, cpus: str) -> dict[str, Any]:
        run = load_run(server, request, conns, self.plan.seconds, cpus, self.work)
        if run["errors"]:
            self.note(f"{server.name} {request.path} c{conns}: {run['errors']} errors")
        return run

    def warm(self, server: Server, request: Request) -> None:
        load_run(server, request, 16, self.plan.warmup, LOAD_CPU, self.work)

    def curves(self, pairs: list[tuple[Server, Request]]) -> list[dict[str, Any]]:
        """Load curves (c1, c16, c64) of several servers, their runs interleaved over a few
        rounds; each figure is the median over the rounds (other load on a shared machine
        hits all of them alike, and a disturbed round is outvoted)."""
        for server, request in pairs:
            self.warm(server, request)
        rounds: list[dict[str, list[dict[str, Any]]]] = [{} for _ in pairs]
        for _ in range(self.plan.rounds):
            for c in CONCURRENCY:
                for i, (server, request) in enumerate(pairs):
                    run = self.load(server, request, c, LOAD_CPU)
                    rounds[i].setdefault(f"c{c}", []).append(run)
        curves = []
        for (server, _), runs in zip(pairs, rounds, strict=True):
            curve = {key: _median_run(samples) for key, samples in runs.items()}
            for key, run in curve.items():
                log(
                    f"  {server.name:<10} {key:>4}: {run['rps']:>8.0f} req/s  "
                    f"{run['cpu_us_per_req'] or 0:>7.0f} CPU-µs/req  p50 {run['p50_ms']:.3f} ms"
                    f"  (other load on its CPU {run['foreign_cpu_pct']}%)"
                )
            curves.append(curve)
        return curves

    def run(self) -> dict[str, Any]:
        plan = self.plan
        wrk_binary()
        self.results["meta"] = meta(plan)
        mock = start_server(
            "mock", [PY, str(BENCH / "mock_upstream.py")], LOAD_CPU, clean_env(), timeout=20
        )
        self.mock = mock
        servers: list[Server] = []
        try:
            env = gateway_env(mock.port, self.work, self.src)
            self.process_figures(env, mock.port)
            gateway = start_server("mini-llm", gateway_cmd(), GATEWAY_CPU, env)
            servers.append(gateway)
            floor = start_server("floor", floor_cmd(mock.port), GATEWAY_CPU, clean_env())
            servers.append(floor)
            time.sleep(0.5)
            self.results["rss_mb"] = {
                "mini-llm": {"idle": round(memory_mb(gateway.pids, "VmRSS"), 1)},
                "floor": {"idle": round(memory_mb(floor.pids, "VmRSS"), 1)},
            }
            floors: dict[str, dict[str, Any]] = {}
            for scenario in selected(self.only):
                self.scenario(scenario, gateway, floor, floors, env)
            self.results["rss_mb"]["mini-llm"]["peak"] = round(memory_mb(gateway.pids, "VmHWM"), 1)
            self.results["rss_mb"]["floor"]["peak"] = round(memory_mb(floor.pids, "VmHWM"), 1)
            for server in servers:
                server.stop()
            servers.clear()
            if not self.only:
                self.results["workers"] = self.workers(env)
                self.results["cache_memory"] = cache_memory(env)
        finally:
            for server in servers:
                server.stop()
            mock.stop()
        self.results["summary"] = summarize(self.results)
        return self.results

    def process_figures(self, env: dict[str, str], mock_port: int) -> None:
        plan = self.plan
        log("process figures: import time, --help time, start-up")
        bare = command_seconds([PY, "-c", "pass"], plan.command_repeat, env)
        imported = command_seconds([PY, "-c", "import mini_llm"], plan.command_repeat, env)
        stack = command_seconds(
            [PY, "-c", "import mini_llm.gateway.server"], plan.command_repeat, env
        )
        cli = shutil.which("mini-llm")
        help_cmd = [cli, "--help"] if cli else [PY, "-m", "mini_llm", "--help"]
        help_s = command_seconds(help_cmd, plan.command_repeat, env)
        startup = {}
        openai = SCENARIOS[0]
        commands: list[tuple[str, Callable[[int], list[str]]]] = [
            ("mini-llm", gateway_cmd),
            ("floor", lambda port: floor_cmd(mock_port, port)),
        ]
        for name, make in commands:
            samples = []
            for _ in range(plan.startup_repeat):
                port = free_port()
                seconds, proc = startup_seconds(make(port), GATEWAY_CPU, env, port, openai.request)
                samples.append(seconds)
                proc.terminate()
                proc.wait(15)
            startup[name] = round(statistics.median(samples), 3)
        self.results["process"] = {
            "python_startup_s": round(bare, 4),
            "import_mini_llm_s": round(imported - bare, 4),
            "import_mini_llm_total_s": round(imported, 4),
            "import_server_stack_s": round(stack - bare, 4),
            "help_s": round(help_s, 4),
            "startup_to_first_answer_s": startup,
        }
        log(f"  {json.dumps(self.results['process'])}")

    def scenario(
        self,
        scenario: Scenario,
        gateway: Server,
        floor: Server,
        floors: dict[str, dict[str, Any]],
        env: dict[str, str],
    ) -> None:
        assert self.mock is not None
        log(f"scenario {scenario.name}: {scenario.title}")
        out: dict[str, Any] = {"title": scenario.title, "stream": scenario.stream}
        self.results["scenarios"][scenario.name] = out
        server = gateway
        extra = dict(scenario.env)
        redis: subprocess.Popen[bytes] | None = None
        if scenario.access == "redis":
            redis, url = start_redis(self.work)
            if redis is None:
                out["skipped"] = url  # why
                self.note(f"{scenario.name} skipped: {url}")
                return
            extra["MINI_LLM_REDIS_URL"] = url
        if extra:  # features switched on: a gateway of its own
            command = [*gateway_cmd(), "--no-state"]  # the shared one is already running
            try:
                server = start_server("mini-llm", command, GATEWAY_CPU, {**env, **extra})
            except BaseException:
                stop_redis(redis)
                raise
        try:
            if scenario.access:
                keyed = with_gateway_key(scenario.request, server.port, BENCH_MASTER_KEY)
                scenario = dataclasses.replace(scenario, request=keyed)
            status, body = post_once(server.port, scenario.request)
            if status != 200:
                out["skipped"] = f"the gateway answered HTTP {status}: {body[:200].decode()}"
                self.note(f"{scenario.name} skipped: {out['skipped']}")
                return
            # what this row is compared to runs in the same rounds as the row itself: the
            # floor (its own request, or the request of the scenario named as its floor) and
            # the pass-through on the shared gateway; a machine whose speed drifts between
            # scenarios does not skew the ratios
            pairs = [(server, scenario.request)]
            if scenario.floor:
                pairs.append((floor, _spec(scenario.floor).request))
            if scenario.passthrough:
                pairs.append((gateway, _spec(scenario.passthrough).request))
            curves = iter(self.curves(pairs))
            out["mini-llm"] = next(curves)
            if scenario.floor:
                out["floor"] = next(curves)
                if scenario.floor == scenario.name:
                    floors[scenario.name] = out["floor"]
            if scenario.passthrough:
                out["passthrough"] = next(curves)
            if scenario.direct is not None:
                direct = [
                    self.load(self.mock, scenario.direct, 1, LOAD_CPU)
                    for _ in range(self.plan.rounds)
                ]
                out["direct"] = {"c1": _median_run(direct)}
            if scenario.stream:
                out["ttfc_ms"] = self.ttfc(scenario, server, floor)
        finally:
            if server is not gateway:
                server.stop()
            stop_redis(redis)

    def ttfc(self, scenario: Scenario, gateway: Server, floor: Server) -> dict[str, float]:
        assert self.mock is not None
        count = self.plan.ttfc_count
        result = {
            "mini-llm": statistics.median(first_chunk_times(gateway.port, scenario.request, count))
        }
        if scenario.floor == scenario.name:
            result["floor"] = statistics.median(
                first_chunk_times(floor.port, scenario.request, count)
            )
        if scenario.direct is not None:
            result["direct"] = statistics.median(
                first_chunk_times(self.mock.port, scenario.direct, count)
            )
        return {k: round(v * 1000, 3) for k, v in result.items()}

    def workers(self, env: dict[str, str]) -> dict[str, Any]:
        """Scaling of `--workers N`: every process on both CPUs, c64, N = 1 and 2."""
        log("workers scaling (all processes on both CPUs)")
        out: dict[str, Any] = {}
        for workers in (1, 2):
            server = start_server(
                f"workers={workers}", gateway_cmd(workers=workers), BOTH_CPUS, env
            )
            try:
                time.sleep(0.3)
                for scenario in SCENARIOS[:2]:
                    self.warm(server, scenario.request)
                    run = self.load(server, scenario.request, 64, BOTH_CPUS)
                    out.setdefault(scenario.name, {})[f"workers={workers}"] = run
                    log(f"  {scenario.name} workers={workers}: {run['rps']:.0f} req/s")
                out.setdefault("rss_mb", {})[f"workers={workers}"] = round(
                    memory_mb(server.pids, "VmHWM"), 1
                )
            finally:
                server.stop()
        return out


def _median_run(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Field by field, the median of several runs of the same load."""
    if len(samples) == 1:
        return samples[0]
    out: dict[str, Any] = {}
    for key, value in samples[0].items():
        values = [s[key] for s in samples if s[key] is not None]
        if isinstance(value, (int, float)) and values:
            out[key] = round(statistics.median(values), 3)
        else:
            out[key] = value
    out["rounds"] = len(samples)
    return out


def meta(plan: Plan) -> dict[str, Any]:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return done.stdout.strip()

    import aiohttp
    import msgspec

    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": git("rev-parse", "--short", "HEAD" if plan.source == "worktree" else plan.source),
        "source": plan.source,
        "dirty": plan.source == "worktree" and bool(git("status", "--porcelain", "--", "src")),
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "msgspec": msgspec.__version__,
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "quick": plan.quick,
        "seconds_per_run": plan.seconds,
        "rounds": plan.rounds,
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
        "pinning": f"gateway/floor on CPU {GATEWAY_CPU}; mock, wrk, this script on CPU {LOAD_CPU}",
        "headline_concurrency": HEADLINE_C,
    }


# --- summary, table, plot ------------------------------------------------------------------


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    scenarios = results["scenarios"]
    summary: dict[str, Any] = {}
    for name, out in scenarios.items():
        if "mini-llm" not in out:
            continue
        spec = _spec(name)
        floor = out.get("floor") or scenarios.get(spec.floor or "", {}).get("floor")
        row: dict[str, Any] = {}
        for c in CONCURRENCY:
            key = f"c{c}"
            mine = out["mini-llm"][key]
            row[f"cpu_us_{key}"] = mine["cpu_us_per_req"]
            row[f"rps_{key}"] = mine["rps"]
            if floor:
                row[f"floor_cpu_us_{key}"] = floor[key]["cpu_us_per_req"]
                row[f"cpu_ratio_{key}"] = _ratio(
                    mine["cpu_us_per_req"], floor[key]["cpu_us_per_req"]
                )
                row[f"rps_ratio_{key}"] = _ratio(mine["rps"], floor[key]["rps"])
        row["p50_ms_c1"] = out["mini-llm"]["c1"]["p50_ms"]
        row["p99_ms_c64"] = out["mini-llm"]["c64"]["p99_ms"]
        if "direct" in out:
            direct = out["direct"]["c1"]["p50_ms"]
            row["added_p50_ms_c1"] = round(out["mini-llm"]["c1"]["p50_ms"] - direct, 3)
            if floor:
                row["floor_added_p50_ms_c1"] = round(floor["c1"]["p50_ms"] - direct, 3)
        if "ttfc_ms" in out and "direct" in out["ttfc_ms"]:
            t = out["ttfc_ms"]
            row["ttfc_added_ms"] = round(t["mini-llm"] - t["direct"], 3)
            if "floor" in t:
                row["floor_ttfc_added_ms"] = round(t["floor"] - t["direct"], 3)
        if spec.passthrough:
            base = out.get("passthrough") or scenarios.get(spec.passthrough, {}).get("mini-llm")
            if base:
                key = f"c{HEADLINE_C}"
                row["cpu_vs_passthrough"] = _ratio(
                    out["mini-llm"][key]["cpu_us_per_req"], base[key]["cpu_us_per_req"]
                )
        summary[name] = row
    return summary


def table(results: dict[str, Any]) -> str:
    lines = []
    head = (
        f"{'scenario':<28} {'system':<9} {'CPU-µs/req c1/c16/c64':>23} {'req/s c1/c16/c64':>22} "
        f"{'p50 c1':>7} {'p99 c64':>8} {'+p50 c1':>8} {'TTFC+':>7} {'other%':>6}"
    )
    lines += [head, "-" * len(head)]
    for name, out in results["scenarios"].items():
        if "skipped" in out:
            lines.append(f"{name:<28} skipped: {out['skipped'][:70]}")
            continue
        direct = out.get("direct", {}).get("c1", {}).get("p50_ms")
        ttfc = out.get("ttfc_ms", {})
        spec = _spec(name)
        for system in ("mini-llm", "floor", "passthrough"):
            runs = out.get(system)
            if not runs:
                continue
            cpu = "/".join(f"{runs[f'c{c}']['cpu_us_per_req'] or 0:.0f}" for c in CONCURRENCY)
            rps = "/".join(f"{runs[f'c{c}']['rps']:.0f}" for c in CONCURRENCY)
            # the latency added over this row's direct request: for the row's own request only
            own = system == "mini-llm" or (system == "floor" and spec.floor == name)
            added = f"{runs['c1']['p50_ms'] - direct:+.3f}" if direct is not None and own else "-"
            first = (
                f"{ttfc[system] - ttfc['direct']:+.3f}"
                if system in ttfc and "direct" in ttfc
                else "-"
            )
            other = max(r.get("foreign_cpu_pct") or 0 for r in runs.values())
            lines.append(
                f"{name if system == 'mini-llm' else '':<28} {system[:9]:<9} {cpu:>23} {rps:>22} "
                f"{runs['c1']['p50_ms']:>7.3f} {runs['c64']['p99_ms']:>8.3f} {added:>8} {first:>7} "
                f"{other:>6.0f}"
            )
        row = results["summary"].get(name, {})
        ratios = "/".join(str(row.get(f"cpu_ratio_c{c}", "-")) for c in CONCURRENCY)
        extra = ""
        if row.get("cpu_vs_passthrough"):
            extra = f"   vs pass-through: {row['cpu_vs_passthrough']}×"
        lines.append(f"{'':<28} {'ratio':<9} {ratios:>23}{extra}")
    p = results["process"]
    rss = results["rss_mb"]
    lines.append("")
    lines.append(
        f"start-up to first answer: mini-llm {p['startup_to_first_answer_s']['mini-llm']} s, "
        f"floor {p['startup_to_first_answer_s']['floor']} s"
    )
    lines.append(
        f"RSS idle/peak: mini-llm {rss['mini-llm']['idle']}/{rss['mini-llm'].get('peak')} MB, "
        f"floor {rss['floor']['idle']}/{rss['floor'].get('peak')} MB"
    )
    lines.append(
        f"import mini_llm: {p['import_mini_llm_s'] * 1000:.0f} ms "
        f"(+ {p['python_startup_s'] * 1000:.0f} ms interpreter); "
        f"server stack {p['import_server_stack_s'] * 1000:.0f} ms; "
        f"mini-llm --help {p['help_s'] * 1000:.0f} ms"
    )
    workers = results.get("workers", {})
    for name in ("openai", "openai-stream"):
        w = workers.get(name)
        if w:
            one, two = w["workers=1"], w["workers=2"]
            lines.append(
                f"workers ({name}, c64, both CPUs): 1 → {one['rps']:.0f} req/s, "
                f"2 → {two['rps']:.0f} req/s (×{two['rps'] / one['rps']:.2f})"
            )
    for note in results["notes"]:
        lines.append(f"note: {note}")
    lines.append(
        "other% = the largest share of the gateway's CPU taken by other processes during a run "
        "(a busy machine); above ~10 % the rates and latencies of that row are disturbed, "
        "CPU-µs/req much less so."
    )
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib
    except ImportError:
        log("installing matplotlib for the plot (a benchmark tool, not a dependency)")
        subprocess.run([PY, "-m", "pip", "install", "-q", "matplotlib"], check=False)
        try:
            import matplotlib
        except ImportError:
            return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key = f"c{HEADLINE_C}"
    names, mine, floors, added, floor_added = [], [], [], [], []
    for name, out in results["scenarios"].items():
        if "mini-llm" not in out:
            continue
        spec = _spec(name)
        floor = out.get("floor") or results["scenarios"].get(spec.floor or "", {}).get("floor")
        names.append(name.replace("-to-", " →\n").replace("-stream", "\nstream"))
        mine.append(out["mini-llm"][key]["cpu_us_per_req"] or 0)
        floors.append(floor[key]["cpu_us_per_req"] if floor else 0)
        row = results["summary"].get(name, {})
        added.append(row.get("added_p50_ms_c1", 0) * 1000)
        floor_added.append(row.get("floor_added_p50_ms_c1", 0) * 1000)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    x = range(len(names))
    w = 0.38
    for ax, a, b, title, unit in (
        (axes[0], mine, floors, f"gateway CPU per request (c{HEADLINE_C})", "CPU µs / request"),
        (axes[1], added, floor_added, "latency added at concurrency 1 (p50)", "µs over the mock"),
    ):
        bars = ax.bar([i - w / 2 for i in x], a, w, label="mini-llm", color="#2b6cb0")
        ax.bar_label(bars, [f"{v:.0f}" if v else "" for v in a], fontsize=8)
        label = "floor: aiohttp pass-through proxy (OpenAI, same stream mode)"
        bars = ax.bar([i + w / 2 for i in x], b, w, label=label, color="#a0aec0")
        ax.bar_label(bars, [f"{v:.0f}" if v else "" for v in b], fontsize=8)
        ax.set_xticks(list(x), names, fontsize=8)
        ax.set_title(title)
        ax.set_ylabel(unit)
        ax.legend(fontsize=8, loc="upper left")
    meta = results["meta"]
    fig.suptitle(
        f"mini-llm {meta['commit']} vs the floor, one run, gateway pinned to one core "
        f"({meta['date'][:10]}{', quick' if meta['quick'] else ''})",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description="mini-llm benchmark (see bench/README.md)")
    parser.add_argument("--quick", action="store_true", help="shorter runs: about 2 minutes")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument(
        "--ref",
        default="HEAD",
        help="git commit whose src/ is measured (default HEAD); 'worktree' for the checkout as is",
    )
    parser.add_argument("--out", default=str(BENCH / "results"), help="results folder")
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated scenario names (and those they are compared to), e.g. "
        "openai,cache-hit; no workers run",
    )
    args = parser.parse_args()
    if (os.cpu_count() or 1) < 2:
        log("this benchmark needs 2 CPUs (gateway on one, load on the other)")
        return 2
    os.sched_setaffinity(0, {int(LOAD_CPU)})
    plan = Plan.make(args.quick, args.ref)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mini-llm-bench-") as work:
        src = REPO / "src" if args.ref == "worktree" else export_source(args.ref, Path(work))
        bench = Bench(plan, Path(work), src)
        bench.only = {name for name in args.only.split(",") if name}
        results = bench.run()
    results["meta"]["wall_s"] = round(time.monotonic() - started, 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = "quick" if args.quick else "full"
    json_path = out / f"latest-{stamp}.json"
    json_path.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(table(results))
    print(f"\nresults: {json_path}")
    if not args.no_plot:
        png = out / f"latest-{stamp}.png"
        if plot(results, png):
            print(f"plot: {png}")
    log(f"wall time {results['meta']['wall_s']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
