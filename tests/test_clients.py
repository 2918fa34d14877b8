"""The TypeScript and Go clients (clients/): their own test suites, run against real gateways
(`node --test`, `go test`); the npm package as published (`npm pack`, installed from the
tarball, imported as ESM and CommonJS, type-checked); the Go module used from another module
by its path; and one race of Python, Node and Go processes that must start exactly one
gateway. `bash scripts/clients` installs what these need; without it they skip, saying why.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .sdk_harness import clean_env, gateway_pids, kill_gateways, wait_for

ROOT = Path(__file__).resolve().parents[1]
TS = ROOT / "clients" / "typescript"
GO = ROOT / "clients" / "go"
INSTALL = "run `bash scripts/clients`"

NODE = shutil.which("node")
NPM = shutil.which("npm")
GO_BIN = shutil.which("go")
TSC = TS / "node_modules" / "typescript" / "bin" / "tsc"

ESM_APP = """\
import { Client } from "mini-llm-client";
const client = await Client.auto({ port: 0 });
const reply = await client.chat("mock/echo", "from esm");
console.log(client.baseUrl, reply.choices[0].message.content);
"""

CJS_APP = """\
const { ensureGateway, Client } = require("mini-llm-client");
ensureGateway({ port: 0 }).then(async (url) => {
  const text = await new Client({ baseUrl: url }).stream("mock/echo", "from cjs").text();
  console.log(url, text);
});
"""

CHECK_MTS = """\
import { APIStatusError, Client, ensureGateway, type ChatCompletion } from "mini-llm-client";
const url: string = await ensureGateway({ port: 0, onVersionMismatch: "warn" });
const reply: ChatCompletion = await new Client({ baseUrl: url }).chat("m", "hi");
for await (const chunk of new Client(url).stream("m", [{ role: "user", content: "x" }])) {
  const text: string | null | undefined = chunk.choices[0]?.delta.content;
  void text;
}
const status: number = new APIStatusError(400, {}).status;
void reply;
void status;
"""

CHECK_CTS = """\
import { Client } from "mini-llm-client";
export const client: Client = new Client({ baseUrl: "http://127.0.0.1:1" });
"""

GO_APP = """\
package main

import (
\t"context"
\t"fmt"

\tminillm "MODULE"
)

func main() {
\tctx := context.Background()
\tclient, err := minillm.Auto(ctx, minillm.Options{Port: minillm.AnyPort})
\tif err != nil {
\t\tpanic(err)
\t}
\tmessages := []minillm.Message{minillm.UserMessage("from go")}
\treply, err := client.Chat(ctx, minillm.ChatRequest{Model: "mock/echo", Messages: messages})
\tif err != nil {
\t\tpanic(err)
\t}
\tfmt.Println(client.BaseURL, reply.Text())
}
"""


def _ts_missing() -> str | None:
    if NODE is None or NPM is None:
        return "node and npm are not installed"
    if not TSC.exists():
        return f"the TypeScript dev dependencies are not installed ({INSTALL})"
    return None


needs_ts = pytest.mark.skipif(_ts_missing() is not None, reason=_ts_missing() or "")
needs_go = pytest.mark.skipif(GO_BIN is None, reason=f"go is not installed ({INSTALL})")


def _env(state_dir: Path, tmp_path: Path, **extra: str) -> dict[str, str]:
    """A clean environment (see `clean_env`) whose Python is this one, with Go's caches kept
    where they are (the test's HOME is the user's) and no network module fetch."""
    env = clean_env(state_dir, MINI_LLM_PYTHON=sys.executable, GOPROXY="off", GOFLAGS="-mod=mod")
    env.setdefault("GOCACHE", str(Path.home() / ".cache" / "go-build"))
    env["TMPDIR"] = str(tmp_path)
    env.update(extra)
    return env


def _run(
    cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, (
        f"{' '.join(cmd)} exited {result.returncode}\n--- stdout\n{result.stdout[-6000:]}"
        f"\n--- stderr\n{result.stderr[-6000:]}"
    )
    return result


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "state"
    yield path
    kill_gateways(path)


@pytest.fixture(scope="module")
def ts_packed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`npm pack` of clients/typescript, once: its `prepack` builds dist/esm and dist/cjs,
    which the other tests use too. `npm pack --json`'s record, with the tarball's `path`."""
    if _ts_missing():
        pytest.skip(_ts_missing() or "")
    assert NPM is not None
    out = tmp_path_factory.mktemp("npm-pack")
    command = [NPM, "pack", "--json", "--pack-destination", str(out)]
    packed: dict[str, Any] = json.loads(_run(command, TS, dict(os.environ), timeout=300).stdout)[0]
    packed["path"] = str(out / packed["filename"])
    return packed


@needs_ts
def test_typescript_suite(ts_packed: dict[str, Any], state_dir: Path, tmp_path: Path) -> None:
    """node --test: ensure/start/reuse, stale state, version policy, supervision, 10 Node +
    10 Python racers, the client (chat, stream, errors, abort), the official openai client."""
    assert NODE is not None
    tests = sorted(str(p.relative_to(TS)) for p in (TS / "test").glob("*.test.mjs"))
    result = _run([NODE, "--test", *tests], TS, _env(state_dir, tmp_path), timeout=600)
    assert "# fail 0" in result.stdout, result.stdout[-4000:]
    assert "# skipped 0" in result.stdout, "the openai test was skipped: " + INSTALL


@needs_ts
def test_npm_package_as_published(
    ts_packed: dict[str, Any], state_dir: Path, tmp_path: Path
) -> None:
    """`npm pack` (prepack builds) holds exactly the built files, package.json and README;
    installed from the tarball, it works as ESM and CommonJS and its types check."""
    assert NPM is not None and NODE is not None
    env = _env(state_dir, tmp_path)
    files = {f["path"] for f in ts_packed["files"]}
    modules = {"cli", "client", "errors", "gateway", "health", "index", "lock", "process"}
    modules |= {"sse", "state", "types"}
    expected = {"package.json", "README.md"}
    for flavour in ("esm", "cjs"):
        expected.add(f"dist/{flavour}/package.json")
        expected |= {f"dist/{flavour}/{m}.{ext}" for m in modules for ext in ("js", "d.ts")}
    assert files == expected
    manifest = json.loads((TS / "package.json").read_text())
    assert not manifest.get("dependencies"), "no runtime dependencies"
    for field in ("exports", "types", "files", "engines", "bin", "license", "repository"):
        assert manifest.get(field), field

    app = tmp_path / "app"
    app.mkdir()
    (app / "package.json").write_text('{"name": "app", "private": true}\n')
    _run([NPM, "install", "--offline", "--no-audit", "--no-fund", ts_packed["path"]], app, env)
    (app / "esm.mjs").write_text(ESM_APP)
    (app / "cjs.cjs").write_text(CJS_APP)
    esm = _run([NODE, "esm.mjs"], app, env).stdout.split()
    cjs = _run([NODE, "cjs.cjs"], app, env).stdout.split()
    assert esm[1:] == ["from", "esm"]
    assert cjs[0] == esm[0]  # the same shared gateway
    assert cjs[1:] == ["from", "cjs"]
    bin_url = _run([str(app / "node_modules" / ".bin" / "mini-llm-gateway")], app, env).stdout
    assert bin_url.strip() == esm[0]
    assert len(gateway_pids(state_dir)) == 1

    # the declarations, as a TypeScript consumer resolves them (ESM and CommonJS)
    (app / "check.mts").write_text(CHECK_MTS)
    (app / "check.cts").write_text(CHECK_CTS)
    _run(
        [
            NODE,
            str(TSC),
            "--noEmit",
            "--strict",
            "--target",
            "ES2022",
            "--module",
            "node16",
            "--moduleResolution",
            "node16",
            "--typeRoots",
            str(TS / "node_modules" / "@types"),
            "--types",
            "node",
            "check.mts",
            "check.cts",
        ],
        app,
        env,
    )


@needs_go
def test_go_suite(state_dir: Path, tmp_path: Path) -> None:
    """go vet and go test: ensure/start/reuse, stale state, version policy, start failures,
    supervision, 10 Go + 10 Python racers, the client (chat, stream, cancellation, errors)."""
    assert GO_BIN is not None
    env = _env(state_dir, tmp_path)
    _run([GO_BIN, "vet", "./..."], GO, env)
    unformatted = _run(["gofmt", "-l", "."], GO, env).stdout if shutil.which("gofmt") else ""
    assert not unformatted.strip(), f"gofmt would change: {unformatted}"
    _run([GO_BIN, "test", "-count=1", "./..."], GO, env, timeout=600)


@needs_go
def test_go_module_used_by_path(state_dir: Path, tmp_path: Path) -> None:
    """Another module gets the Go module by its path (`go get` after a `replace` to this
    checkout: no network fetch is possible here) and a working client of the shared gateway."""
    assert GO_BIN is not None
    app = tmp_path / "app"
    app.mkdir()
    module = (GO / "go.mod").read_text().split()[1]
    env = _env(state_dir, tmp_path)
    # what the README says to do: a replace to the checkout, then go get
    _run([GO_BIN, "mod", "init", "example.com/app"], app, env)
    _run([GO_BIN, "mod", "edit", "-replace", f"{module}={GO}"], app, env)
    _run([GO_BIN, "get", module], app, env)
    (app / "main.go").write_text(GO_APP.replace("MODULE", module))
    out = _run([GO_BIN, "run", "."], app, env).stdout.split()
    assert out[1:] == ["from", "go"]
    assert len(gateway_pids(state_dir)) == 1


PYTHON_RACER = """
import os, sys, time
from mini_llm import ensure_gateway
go = sys.argv[1]
open(sys.argv[2], "w").close()
deadline = time.monotonic() + 120
while not os.path.exists(go):
    if time.monotonic() > deadline:
        sys.exit("no go signal")
    time.sleep(0.002)
print(ensure_gateway(port=0, timeout=60))
"""


@needs_ts
@needs_go
def test_python_node_and_go_racing_start_exactly_one_gateway(
    ts_packed: dict[str, Any], state_dir: Path, tmp_path: Path
) -> None:
    """8 Python, 8 Node and 8 Go processes, each following the protocol in its own language,
    released at the same moment: one gateway, one URL for all."""
    assert GO_BIN is not None and NODE is not None
    env = _env(state_dir, tmp_path)
    go_racer = tmp_path / "go-racer"
    _run([GO_BIN, "test", "-c", "-o", str(go_racer), "."], GO, env)
    go = tmp_path / "go"
    ready = tmp_path / "ready"
    ready.mkdir()
    commands: list[tuple[list[str], dict[str, str]]] = []
    for i in range(8):
        python = [sys.executable, "-c", PYTHON_RACER, str(go), str(ready / f"py-{i}")]
        commands.append((python, env))
        commands.append(
            ([NODE, str(TS / "test" / "racer.mjs"), str(go), str(ready / f"node-{i}")], env)
        )
        racer_env = {
            **env,
            "MINI_LLM_RACER_GO": str(go),
            "MINI_LLM_RACER_READY": str(ready / f"go-{i}"),
        }
        commands.append(([str(go_racer), "-test.run=^TestRacerProcess$"], racer_env))
    procs: list[subprocess.Popen[str]] = [
        subprocess.Popen(cmd, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for cmd, e in commands
    ]
    try:
        wait_for(lambda: len(list(ready.iterdir())) == len(procs), 120, "every racer to be ready")
        started = time.monotonic()
        go.touch()
        results = [proc.communicate(timeout=120) for proc in procs]
        elapsed = time.monotonic() - started
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    for proc, (_, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, f"{proc.args!r}: {err}"
    urls = {line for out, _ in results for line in out.split() if line.startswith("http://")}
    assert len(urls) == 1, urls
    assert len(gateway_pids(state_dir)) == 1
    log = (state_dir / "gateway.log").read_text()
    assert log.count(" listening on ") == 1, log
    assert elapsed < 60
