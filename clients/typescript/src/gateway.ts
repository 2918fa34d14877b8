/**
 * `ensureGateway`: one shared gateway per user per machine, found or started on demand, by the
 * protocol every mini-llm client follows (docs/LOCAL-GATEWAY.md):
 *
 * 1. Read the state file. If its pid is alive and `GET /health` answers with that pid (or a
 *    worker whose parent it is), use it.
 * 2. Otherwise take the exclusive `flock` on the lock file beside it and look again.
 * 3. Still nothing: spawn `python -m mini_llm serve --state-file …` in a session of its own,
 *    output appended to the log, and wait until the gateway has published itself in the
 *    state file and `/health` answers with the spawned pid. No log output is parsed.
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
import { request } from "node:http";
import { delimiter, join, resolve as resolvePath } from "node:path";

import { GatewayConfigError, GatewayStartError, GatewayVersionError } from "./errors.js";
import { FileLock, LockTimeoutError } from "./lock.js";
import {
  type Env,
  type GatewayState,
  LOCK_FILE,
  LOG_FILE,
  STATE_FILE,
  defaultStateDir,
  ensureDir,
  parentPid,
  pidAlive,
  processCmdline,
  readState,
} from "./state.js";

export type VersionPolicy = "warn" | "error" | "restart";

export interface GatewayOptions {
  /** Where the state, lock and log files live (default: see `defaultStateDir`). */
  stateDir?: string;
  /** The Python that runs the gateway: this, else `$MINI_LLM_PYTHON`, else `python3` or
   * `python` on `PATH`. It must have the `mini-llm` package installed. */
  python?: string;
  /** Passed to a gateway this call starts (`--host`); a running gateway is used as it is. */
  host?: string;
  /** `--port` of a gateway this call starts: 0 is any free port; unset, the gateway's own
   * configuration decides (3333 by default). */
  port?: number;
  /** `--workers` of a gateway this call starts. */
  workers?: number;
  /** Its configuration file (`MINI_LLM_CONFIG`, made absolute). */
  configPath?: string;
  /** Added to the environment the gateway inherits: how provider keys reach it. */
  env?: Env;
  /** How long to wait for a started gateway to be ready (default 20 000 ms). */
  timeoutMs?: number;
  /** How long one `/health` may take (default 2 000 ms). */
  healthTimeoutMs?: number;
  /** The gateway version this program wants. Unset (the default), any version is used. */
  expectVersion?: string;
  /** When a gateway of another version than `expectVersion` runs: "warn" (use it), "error"
   * (throw `GatewayVersionError`) or "restart" (stop it and start the installed one). */
  onVersionMismatch?: VersionPolicy;
  /** Check the gateway's health now and then and restart it when it is gone (see
   * `superviseGateway`); set up once per state directory in a process. */
  supervise?: boolean | SuperviseOptions;
  /** Called with each thing done (started, stopped, restarted...), also logged to the log file. */
  onEvent?: (message: string) => void;
}

export interface SuperviseOptions {
  /** Between two health checks (default 30 000 ms). */
  intervalMs?: number;
  /** Failed restarts are retried after 1, 2, 4 … s, at most this (default 30 000 ms). */
  maxBackoffMs?: number;
}

export interface Health {
  status: string;
  pid: number;
  version: string;
  uptime_s?: number;
  shutdown_grace_s?: number;
  config_fingerprint?: string;
  [field: string]: unknown;
}

export interface FoundGateway {
  state: GatewayState;
  health: Health;
}

export interface GatewayPaths {
  stateDir: string;
  stateFile: string;
  lockFile: string;
  logFile: string;
}

const POLL_MS = 20;
const LOG_ROTATE_BYTES = 10 * 1024 * 1024;
const STOP_MARGIN_MS = 5_000;
const DEFAULT_STOP_GRACE_MS = 35_000;

/** The base URL of the shared gateway (e.g. `http://127.0.0.1:3333`), started if needed. */
export async function ensureGateway(options: GatewayOptions = {}): Promise<string> {
  const { state } = await ensureGatewayState(options);
  if (options.supervise) {
    const key = gatewayPaths(options).stateFile;
    if (!supervisors.has(key)) {
      const settings = options.supervise === true ? {} : options.supervise;
      supervisors.set(key, superviseGateway(options, settings));
    }
  }
  return state.url;
}

/** The running gateway's state and whether this call started it. `keepPort`: a replacement for
 * a dead gateway takes its port and configuration file (unless options give others). */
export async function ensureGatewayState(
  options: GatewayOptions = {},
  { keepPort = false }: { keepPort?: boolean } = {},
): Promise<{ state: GatewayState; started: boolean }> {
  const paths = gatewayPaths(options);
  let found = await findGateway(options);
  if (found && versionOk(found, options)) return { state: found.state, started: false };
  const python = findPython(options);
  const lock = await takeLock(paths, options, python);
  try {
    found = await findGateway(options);
    if (found && versionOk(found, options)) return { state: found.state, started: false };
    if (found) {
      event(paths, options, `restarting gateway pid ${found.state.pid} (version ` +
        `${found.health.version}) as the installed version`);
      await stopLocked(paths, found.state, options);
    }
    const previous = keepPort ? readState(paths.stateFile) : null;
    return { state: await startLocked(paths, options, python, previous), started: true };
  } finally {
    await lock.release();
  }
}

/** The gateway the state file names, if it is alive and `/health` answers as itself. */
export async function findGateway(options: GatewayOptions = {}): Promise<FoundGateway | null> {
  const state = readState(gatewayPaths(options).stateFile);
  if (state === null) return null;
  const health = await probe(state, options.healthTimeoutMs);
  return health ? { state, health } : null;
}

/** Stop the shared gateway (SIGTERM, then SIGKILL after `graceMs`, by default its own drain
 * time plus 5 s); the stopped state, or null when none ran. A stale state file is removed; an
 * unrelated process whose pid it names is never signalled. */
export async function stopGateway(
  options: GatewayOptions & { graceMs?: number } = {},
): Promise<GatewayState | null> {
  const paths = gatewayPaths(options);
  if (readState(paths.stateFile) === null) return null;
  const lock = await takeLock(paths, options, findPython(options));
  try {
    const state = readState(paths.stateFile);
    if (state === null) return null;
    return (await stopLocked(paths, state, options, options.graceMs)) ? state : null;
  } finally {
    await lock.release();
  }
}

export interface Supervisor {
  stop(): void;
}

const supervisors = new Map<string, Supervisor>();

/** Check the gateway every `intervalMs` and restart it (on the same port) when it is gone or
 * unhealthy, retrying with backoff. The timer does not keep the process alive. */
export function superviseGateway(
  options: GatewayOptions = {},
  { intervalMs = 30_000, maxBackoffMs = 30_000 }: SuperviseOptions = {},
): Supervisor {
  const paths = gatewayPaths(options);
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const schedule = (ms: number, run: () => Promise<void>) => {
    if (stopped) return;
    timer = setTimeout(() => void run(), ms);
    timer.unref();
  };
  const check = async (): Promise<void> => {
    if ((await findGateway(options)) !== null) return schedule(intervalMs, check);
    event(paths, options, "gateway is gone or unhealthy; restarting it");
    let delay = 1_000;
    const attempt = async (): Promise<void> => {
      if (stopped) return;
      try {
        const { state, started } = await ensureGatewayState(options, { keepPort: true });
        if (!started) event(paths, options, `gateway pid ${state.pid} is back (started elsewhere)`);
        schedule(intervalMs, check);
      } catch (e) {
        event(paths, options, `restart failed: ${(e as Error).message}; retrying in ${delay / 1000} s`);
        schedule(delay, attempt);
        delay = Math.min(delay * 2, maxBackoffMs);
      }
    };
    await attempt();
  };
  schedule(intervalMs, check);
  const supervisor = {
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      if (supervisors.get(paths.stateFile) === supervisor) supervisors.delete(paths.stateFile);
    },
  };
  return supervisor;
}

export function gatewayPaths(options: GatewayOptions = {}): GatewayPaths {
  const stateDir = resolvePath(options.stateDir ?? defaultStateDir({ ...process.env, ...options.env }));
  return {
    stateDir,
    stateFile: join(stateDir, STATE_FILE),
    lockFile: join(stateDir, LOCK_FILE),
    logFile: join(stateDir, LOG_FILE),
  };
}

/** `GET {url}/health` decoded, or null when it does not answer 200 with a JSON object. A fresh
 * connection each time (no keep-alive): nothing is left open to hold the process. */
export function fetchHealth(url: string, timeoutMs = 2_000): Promise<Health | null> {
  return new Promise((resolve) => {
    let req;
    try {
      req = request(new URL("/health", url), { agent: false, timeout: timeoutMs }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("error", () => resolve(null));
        res.on("end", () => {
          if (res.statusCode !== 200) return resolve(null);
          try {
            const data = JSON.parse(Buffer.concat(chunks).toString("utf8"));
            resolve(data !== null && typeof data === "object" && !Array.isArray(data) ? data : null);
          } catch {
            resolve(null);
          }
        });
      });
    } catch {
      return resolve(null);
    }
    req.on("timeout", () => req.destroy());
    req.on("error", () => resolve(null));
    req.end();
  });
}

// finding

async function probe(state: GatewayState, timeoutMs?: number): Promise<Health | null> {
  if (!pidAlive(state.pid)) return null;
  const health = await fetchHealth(state.url, timeoutMs);
  return health && sameGateway(health.pid, state.pid) ? health : null;
}

/** Whether `/health`'s pid is the published gateway: itself, or one of its workers
 * (`serve --workers N` answers from forked children of the published pid). */
function sameGateway(answering: unknown, published: number): boolean {
  if (typeof answering !== "number" || !Number.isInteger(answering)) return false;
  return answering === published || parentPid(answering) === published;
}

const warned = new Set<number>();

function versionOk(found: FoundGateway, options: GatewayOptions): boolean {
  const expected = options.expectVersion;
  const running = String(found.health.version);
  if (expected === undefined || running === expected) return true;
  const message =
    `the running gateway (pid ${found.state.pid}, ${found.state.url}) is version ${running}, ` +
    `${expected} was asked for`;
  const policy = options.onVersionMismatch ?? "warn";
  if (policy === "error") {
    throw new GatewayVersionError(`${message}; restart it with \`mini-llm restart\``, running, expected);
  }
  if (policy === "restart") return false;
  if (!warned.has(found.state.pid)) {
    warned.add(found.state.pid);
    process.emitWarning(`${message}; using it (restart it to upgrade)`, "MiniLLMVersionWarning");
  }
  return true;
}

// starting

async function takeLock(paths: GatewayPaths, options: GatewayOptions, python: string): Promise<FileLock> {
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

async function startLocked(
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

async function stopLocked(
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

function event(paths: GatewayPaths, options: GatewayOptions, message: string): void {
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
