// ensureGateway against real gateways (`python -m mini_llm serve`, the mock provider): start,
// publish, reuse, stale state, version policy, start failures, supervision, and Node and Python
// callers racing to start exactly one gateway.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import {
  GatewayConfigError,
  GatewayStartError,
  GatewayVersionError,
  ensureGateway,
  ensureGatewayState,
  findGateway,
  stopGateway,
} from "../dist/esm/index.js";
import { PYTHON, alive, gatewayPids, listeningLines, stateDir, tempDir, waitFor } from "./helpers.mjs";

const here = fileURLToPath(new URL(".", import.meta.url));

test("ensure starts a gateway, publishes it, and reuses it", async (t) => {
  const dir = stateDir(t);
  const first = await ensureGatewayState({ stateDir: dir, port: 0 });
  assert.equal(first.started, true);
  const state = first.state;
  assert.equal(state.url, `http://127.0.0.1:${state.port}`);
  const onDisk = JSON.parse(readFileSync(join(dir, "gateway.json"), "utf8"));
  assert.deepEqual(Object.keys(onDisk).sort(), [
    "config_fingerprint", "config_path", "flags", "host", "key_env", "pid", "port", "started_at", "url", "version",
  ]);
  assert.equal(onDisk.pid, state.pid);
  assert.deepEqual(gatewayPids(dir), [state.pid]);
  // the state directory and its files are the user's only
  assert.equal(readFileSync(`/proc/self/status`, "utf8").length > 0, true);
  for (const name of ["gateway.json", "gateway.lock", "gateway.log"]) {
    const { statSync } = await import("node:fs");
    assert.equal(statSync(join(dir, name)).mode & 0o077, 0, `${name} is private`);
  }

  const again = await ensureGatewayState({ stateDir: dir, port: 0 });
  assert.equal(again.started, false);
  assert.deepEqual(again.state, state);
  assert.equal(await ensureGateway({ stateDir: dir }), state.url);

  // a Python caller finds the same gateway
  const python = await run(PYTHON, ["-c", "from mini_llm import ensure_gateway; print(ensure_gateway())"], {
    ...process.env, MINI_LLM_STATE_DIR: dir,
  });
  assert.equal(python.stdout.trim(), state.url);
  assert.deepEqual(gatewayPids(dir), [state.pid]);

  const stopped = await stopGateway({ stateDir: dir });
  assert.equal(stopped.pid, state.pid);
  assert.equal(alive(state.pid), false);
  assert.equal(existsSync(join(dir, "gateway.json")), false);
  assert.equal(await stopGateway({ stateDir: dir }), null);
  assert.equal(await findGateway({ stateDir: dir }), null);
});

test("a state file left by a dead gateway is replaced", async (t) => {
  const dir = stateDir(t);
  const { state } = await ensureGatewayState({ stateDir: dir, port: 0 });
  process.kill(state.pid, "SIGKILL");
  await waitFor(() => !alive(state.pid), 10_000, "the gateway to die");
  assert.equal(JSON.parse(readFileSync(join(dir, "gateway.json"), "utf8")).pid, state.pid);
  const next = await ensureGatewayState({ stateDir: dir, port: 0 });
  assert.equal(next.started, true);
  assert.notEqual(next.state.pid, state.pid);
  assert.deepEqual(gatewayPids(dir), [next.state.pid]);
});

test("a pid reused by an unrelated process is left alone", async (t) => {
  const dir = stateDir(t);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const unrelated = spawn("sleep", ["60"], { stdio: "ignore" });
  t.after(() => unrelated.kill("SIGKILL"));
  const port = await closedPort();
  writeFileSync(join(dir, "gateway.json"), JSON.stringify({
    pid: unrelated.pid, host: "127.0.0.1", port, url: `http://127.0.0.1:${port}`, version: "0.1.0", started_at: 0,
  }));
  const { state, started } = await ensureGatewayState({ stateDir: dir, port: 0 });
  assert.equal(started, true);
  assert.notEqual(state.pid, unrelated.pid);
  assert.equal(alive(unrelated.pid), true, "the unrelated process was not signalled");
});

test("a gateway of another version: warn, error or restart", async (t) => {
  const dir = stateDir(t);
  const { state } = await ensureGatewayState({ stateDir: dir, port: 0 });
  const warnings = [];
  const onWarning = (w) => warnings.push(w);
  process.on("warning", onWarning);
  t.after(() => process.off("warning", onWarning));
  assert.equal(await ensureGateway({ stateDir: dir, expectVersion: "9.9.9" }), state.url);
  await new Promise((resolve) => setImmediate(resolve));
  assert.match(warnings.map(String).join("\n"), /is version 0\.1\.0, 9\.9\.9 was asked for/);
  await assert.rejects(
    ensureGateway({ stateDir: dir, expectVersion: "9.9.9", onVersionMismatch: "error" }),
    (e) => e instanceof GatewayVersionError && e.running === "0.1.0" && e.expected === "9.9.9",
  );
  // "restart" replaces it with the installed one (which, here, is 0.1.0 again)
  const restarted = await ensureGatewayState({ stateDir: dir, port: 0, expectVersion: "9.9.9", onVersionMismatch: "restart" });
  assert.equal(restarted.started, true);
  assert.notEqual(restarted.state.pid, state.pid);
  assert.equal(alive(state.pid), false);
});

test("an invalid configuration is a GatewayConfigError with the gateway's own words", async (t) => {
  const dir = stateDir(t);
  const config = join(tempDir(t), "mini-llm.toml");
  writeFileSync(config, "port = 'not a port'\n");
  await assert.rejects(
    ensureGateway({ stateDir: dir, port: 0, configPath: config }),
    (e) => e instanceof GatewayConfigError && /exit status 2/.test(e.message) && e.output.length > 0,
  );
  assert.deepEqual(gatewayPids(dir), []);
});

test("no Python to run the gateway is a GatewayStartError naming it", async (t) => {
  const dir = stateDir(t);
  await assert.rejects(
    ensureGateway({ stateDir: dir, python: "/nonexistent/python3" }),
    (e) => e instanceof GatewayStartError && /\/nonexistent\/python3/.test(e.message),
  );
});

test("supervision restarts a killed gateway on the same port", async (t) => {
  const dir = stateDir(t);
  const events = [];
  const options = { stateDir: dir, port: 0, onEvent: (m) => events.push(m) };
  const { state } = await ensureGatewayState(options);
  const { superviseGateway } = await import("../dist/esm/index.js");
  const supervisor = superviseGateway(options, { intervalMs: 100 });
  let found;
  try {
    process.kill(state.pid, "SIGKILL");
    found = await waitFor(async () => {
      const f = await findGateway(options);
      return f && f.state.pid !== state.pid ? f : null;
    }, 30_000, "a new gateway");
  } finally {
    await supervisor.stop(); // before the gateways are killed, or it would start another one
  }
  assert.equal(found.state.port, state.port);
  assert.ok(events.some((m) => /gone or unhealthy/.test(m)), events.join("\n"));
});

const PYTHON_RACER = `
import os, sys, time
from mini_llm import ensure_gateway
go = sys.argv[1]
open(sys.argv[2], "w").close()
deadline = time.monotonic() + 60
while not os.path.exists(go):
    if time.monotonic() > deadline:
        sys.exit("no go signal")
    time.sleep(0.002)
print(ensure_gateway(port=0, timeout=60))
`;

test("10 Node and 10 Python processes racing start exactly one gateway", { timeout: 180_000 }, async (t) => {
  const dir = stateDir(t);
  const tmp = tempDir(t);
  const go = join(tmp, "go");
  const env = { ...process.env, MINI_LLM_STATE_DIR: dir };
  const racers = [];
  for (let i = 0; i < 10; i++) {
    racers.push(run(process.execPath, [join(here, "racer.mjs"), go, join(tmp, `node-${i}`)], env));
    racers.push(run(PYTHON, ["-c", PYTHON_RACER, go, join(tmp, `python-${i}`)], env));
  }
  await waitFor(
    () => [...Array(10).keys()].every((i) => existsSync(join(tmp, `node-${i}`)) && existsSync(join(tmp, `python-${i}`))),
    120_000,
    "every racer to be ready",
  );
  writeFileSync(go, "");
  const results = await Promise.all(racers);
  const urls = new Set(results.map((r) => r.stdout.trim()));
  assert.equal(urls.size, 1, `one URL for all: ${[...urls]}`);
  assert.equal(gatewayPids(dir).length, 1);
  assert.equal(listeningLines(dir).length, 1, "exactly one gateway was started");
});

function run(cmd, args, env) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", reject);
    child.on("exit", (code) =>
      code === 0 ? resolve({ stdout, stderr }) : reject(new Error(`${cmd} ${args[0]} exited ${code}: ${stderr}`)),
    );
  });
}

function closedPort() {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}
