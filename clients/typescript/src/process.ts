/**
 * Starting and stopping gateway processes: the interpreter, the command and environment, the
 * spawn in a session of its own, readiness, SIGTERM then SIGKILL, and the log.
 */

import { spawn } from "node:child_process";
import {
  accessSync,
  appendFileSync,
  closeSync,
  constants,
  openSync,
  readSync,
  renameSync,
  statSync,
  unlinkSync,
} from "node:fs";
import { delimiter, join, resolve as resolvePath } from "node:path";

import { GatewayConfigError, GatewayStartError } from "./errors.js";
import type { GatewayOptions, GatewayPaths } from "./gateway.js";
import { fetchHealth, probe, sameGateway } from "./health.js";
import { FileLock, LockTimeoutError } from "./lock.js";
import { type GatewayState, ensureDir, pidAlive, processCmdline, readState } from "./state.js";

const POLL_MS = 20;
const LOG_ROTATE_BYTES = 10 * 1024 * 1024;
const STOP_MARGIN_MS = 5_000;
export const DEFAULT_STOP_GRACE_MS = 35_000;

export async function takeLock(paths: GatewayPaths, options: GatewayOptions, python: string): Promise<FileLock> {
  ensureDir(paths.stateDir);
  const timeoutMs = (options.timeoutMs ?? 20_000) + DEFAULT_STOP_GRACE_MS + 10_000;
  try {
    return await FileLock.acquire(paths.lockFile, timeoutMs, python);
  } catch (e) {
    if (e instanceof LockTimeoutError) throw new GatewayStartError(e.message);
    throw new GatewayStartError((e as Error).message);
  }
}

/** The interpreter: the option, `$MINI_LLM_PYTHON`, else `python3` or `python` on `PATH`. */
export function findPython(options: GatewayOptions = {}): string {
  const env = { ...process.env, ...options.env };
  const chosen = options.python ?? env.MINI_LLM_PYTHON;
  if (chosen) return chosen;
  for (const name of ["python3", "python"]) {
    for (const dir of (env.PATH ?? "").split(delimiter)) {
      if (!dir) continue;
      try {
        accessSync(join(dir, name), constants.X_OK);
        return join(dir, name);
      } catch {
        // not here
      }
    }
  }
  throw new GatewayStartError(
    "no Python found to run the gateway: install mini-llm (`pip install mini-llm`) and put " +
      "python3 on PATH, or set MINI_LLM_PYTHON (or the `python` option)",
  );
}

function command(
  paths: GatewayPaths,
  options: GatewayOptions,
  previous: GatewayState | null,
): string[] {
  const flags = previous?.flags ?? {};
  const host = options.host ?? (typeof flags.host === "string" ? flags.host : undefined);
  // a replacement keeps the port clients already know (asked for "any" port or none)
  const port = previous && !options.port ? previous.port : options.port;
  const workers = options.workers ?? (typeof flags.workers === "number" ? flags.workers : undefined);
  const args = ["-m", "mini_llm", "serve", "--state-file", paths.stateFile];
  if (host) args.push("--host", host);
  if (port !== undefined) args.push("--port", String(port));
  if (workers !== undefined && workers > 1) args.push("--workers", String(workers));
  return args;
}

function childEnv(options: GatewayOptions, previous: GatewayState | null): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const [name, value] of Object.entries(options.env ?? {})) {
    if (value === undefined) delete env[name];
    else env[name] = value;
  }
  if (options.configPath) env.MINI_LLM_CONFIG = resolvePath(options.configPath);
  else if (previous) {
    // the same configuration source as the gateway it replaces, even none
    if (previous.config_path) env.MINI_LLM_CONFIG = previous.config_path;
    else delete env.MINI_LLM_CONFIG;
  } else if (env.MINI_LLM_CONFIG) env.MINI_LLM_CONFIG = resolvePath(env.MINI_LLM_CONFIG);
  return env;
}

export async function startLocked(
  paths: GatewayPaths,
  options: GatewayOptions,
  python: string,
  previous: GatewayState | null,
): Promise<GatewayState> {
  ensureDir(paths.stateDir);
  const old = readState(paths.stateFile);
  if (old !== null) {
    // unreachable or not answering as itself: stop it only if it provably is our gateway
    // (its pid may have been reused by an unrelated process)
    if (pidAlive(old.pid) && isOurGateway(old.pid, paths)) {
      event(paths, options, `stopping unresponsive gateway pid ${old.pid}`);
      await terminate(old.pid, DEFAULT_STOP_GRACE_MS);
    }
    removeStateIfPid(paths.stateFile, old.pid);
  }
  rotateLog(paths.logFile);
  const offset = fileSize(paths.logFile);
  event(paths, options, "starting the gateway");
  const logFd = openSync(paths.logFile, "a", 0o600);
  let child;
  try {
    child = spawn(python, command(paths, options, previous), {
      detached: true, // setsid(): a session of its own, it outlives this process
      stdio: ["ignore", logFd, logFd],
      env: childEnv(options, previous),
    });
  } finally {
    closeSync(logFd);
  }
  let exit: { code: number | null; error?: Error } | undefined;
  child.on("error", (error) => (exit = { code: null, error }));
  child.on("exit", (code, signal) => (exit = { code: code ?? (signal ? 128 : null) }));
  child.unref();
  const pid = child.pid;
  const deadline = Date.now() + (options.timeoutMs ?? 20_000);
  for (;;) {
    if (exit !== undefined || pid === undefined) {
      await sleep(POLL_MS); // let "error" arrive when the spawn itself failed
      if (exit?.error || pid === undefined) {
        throw new GatewayStartError(`cannot start ${python}: ${exit?.error?.message ?? "spawn failed"}`);
      }
      throw exited(exit!.code ?? 1, logSince(paths.logFile, offset), paths.logFile);
    }
    const state = readState(paths.stateFile);
    if (state !== null && state.pid === pid) {
      const health = await fetchHealth(state.url, options.healthTimeoutMs);
      if (health && sameGateway(health.pid, pid)) {
        event(paths, options, `started gateway pid ${pid} at ${state.url}`);
        return state;
      }
    }
    if (Date.now() > deadline) {
      await terminate(pid, 5_000);
      throw new GatewayStartError(
        `the gateway did not become ready within ${(options.timeoutMs ?? 20_000) / 1000} s ` +
          `(log: ${paths.logFile})`,
      );
    }
    await sleep(POLL_MS);
  }
}

function exited(code: number, output: string[], logFile: string): GatewayStartError {
  const lines = output.map((line) => line.replace(/^mini-llm: /, ""));
  const where = `exit status ${code}; log: ${logFile}`;
  const message =
    lines.length === 1
      ? `the gateway did not start: ${lines[0]} (${where})`
      : lines.length
        ? `the gateway did not start (${where}):\n${lines.join("\n")}`
        : `the gateway did not start and printed nothing (${where})`;
  // exit status 2 is the gateway's "invalid configuration"
  return code === 2 ? new GatewayConfigError(message, output) : new GatewayStartError(message, output);
}

// stopping

export async function stopLocked(
  paths: GatewayPaths,
  state: GatewayState,
  options: GatewayOptions,
  graceMs?: number,
): Promise<boolean> {
  let stopped = false;
  const health = await probe(state, options.healthTimeoutMs);
  if (pidAlive(state.pid) && (health !== null || isOurGateway(state.pid, paths))) {
    const drain = health?.shutdown_grace_s;
    const grace = graceMs ?? (typeof drain === "number" ? drain * 1000 + STOP_MARGIN_MS : DEFAULT_STOP_GRACE_MS);
    await terminate(state.pid, grace);
    stopped = true;
    event(paths, options, `stopped gateway pid ${state.pid}`);
  }
  removeStateIfPid(paths.stateFile, state.pid);
  return stopped;
}

/** Whether `pid`'s command line proves it is a gateway of this state file. */
function isOurGateway(pid: number, paths: GatewayPaths): boolean {
  const cmdline = processCmdline(pid);
  return (
    cmdline !== null &&
    cmdline.includes("serve") &&
    cmdline.includes(paths.stateFile) &&
    cmdline.some((part) => part.includes("mini_llm") || part.includes("mini-llm"))
  );
}

/** SIGTERM, wait `graceMs`, then SIGKILL; whether it is gone. */
async function terminate(pid: number, graceMs: number): Promise<boolean> {
  for (const [signal, waitMs] of [["SIGTERM", graceMs], ["SIGKILL", 5_000]] as const) {
    try {
      process.kill(pid, signal);
    } catch {
      return true;
    }
    const deadline = Date.now() + waitMs;
    while (Date.now() < deadline) {
      if (!pidAlive(pid)) return true;
      await sleep(POLL_MS);
    }
  }
  return !pidAlive(pid);
}

function removeStateIfPid(path: string, pid: number): void {
  if (readState(path)?.pid !== pid) return;
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
}

// the log

export function event(paths: GatewayPaths, options: GatewayOptions, message: string): void {
  options.onEvent?.(message);
  const now = new Date();
  const pad = (n: number) => String(n).padStart(2, "0");
  const stamp =
    `${now.getFullYear()}-${pad(now.getMonth() + 1)}-${pad(now.getDate())} ` +
    `${pad(now.getHours())}:${pad(now.getMinutes())}:${pad(now.getSeconds())}`;
  try {
    ensureDir(paths.stateDir);
    appendFileSync(paths.logFile, `--- ${stamp} node client pid ${process.pid}: ${message}\n`, {
      mode: 0o600,
    });
  } catch {
    // the log is a courtesy
  }
}

function rotateLog(logFile: string): void {
  try {
    if (statSync(logFile).size > LOG_ROTATE_BYTES) renameSync(logFile, `${logFile}.1`);
  } catch {
    // no log yet
  }
}

function fileSize(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

/** What the gateway printed since `offset` (this side's `--- ` lines left out), last 20 lines. */
function logSince(logFile: string, offset: number): string[] {
  let text: string;
  try {
    const fd = openSync(logFile, "r");
    try {
      const buffer = Buffer.alloc(64 * 1024);
      const n = readSync(fd, buffer, 0, buffer.length, offset);
      text = buffer.subarray(0, n).toString("utf8");
    } finally {
      closeSync(fd);
    }
  } catch {
    return [];
  }
  return text
    .split(/\r?\n/)
    .map((line) => line.trimEnd())
    .filter((line) => line.trim() && !line.startsWith("--- "))
    .slice(-20);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
