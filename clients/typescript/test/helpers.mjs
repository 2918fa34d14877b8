// Shared by the tests: a state directory of each test's own, and finding and killing (by pid)
// the gateways a test started, found by their command line naming its state file.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

export const PYTHON = process.env.MINI_LLM_PYTHON || "python3";

export function tempDir(t) {
  const dir = mkdtempSync(join(tmpdir(), "mini-llm-node-"));
  t?.after?.(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A state directory (not created yet) whose gateways are killed (by pid) when the test ends. */
export function stateDir(t) {
  const dir = join(tempDir(t), "state");
  t.after(() => killGateways(dir));
  return dir;
}

export function alive(pid) {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "latin1");
    return !"ZX".includes(stat[stat.lastIndexOf(")") + 2]);
  } catch {
    return false;
  }
}

/** Live processes whose command line names this state directory's state file. */
export function gatewayPids(dir) {
  const marker = join(dir, "gateway.json");
  const pids = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    let cmdline;
    try {
      cmdline = readFileSync(`/proc/${name}/cmdline`, "latin1").split("\0");
    } catch {
      continue;
    }
    if (cmdline.includes(marker) && cmdline.includes("serve") && alive(Number(name))) pids.push(Number(name));
  }
  return pids;
}

export async function killGateways(dir) {
  const pids = gatewayPids(dir);
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone
    }
  }
  for (const pid of pids) await waitFor(() => !alive(pid), 10_000, `pid ${pid} to die`);
  return pids;
}

export async function waitFor(predicate, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await predicate();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

/** Lines of the gateway log saying a gateway is listening: one per gateway started. */
export function listeningLines(dir) {
  try {
    return readFileSync(join(dir, "gateway.log"), "utf8")
      .split("\n")
      .filter((line) => / listening on /.test(line));
  } catch {
    return [];
  }
}
