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

import { join, resolve as resolvePath } from "node:path";

import { GatewayVersionError } from "./errors.js";
import { type Health, fetchHealth, probe } from "./health.js";
import { event, startLocked, stopLocked, takeLock, findPython } from "./process.js";
import { type Env, type GatewayState, LOCK_FILE, LOG_FILE, STATE_FILE, defaultStateDir, readState } from "./state.js";

export { fetchHealth, findPython };
export type { Health };

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
  /** No more checks; resolves once a check or restart under way has finished. */
  stop(): Promise<void>;
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
  let running: Promise<void> = Promise.resolve();
  const schedule = (ms: number, run: () => Promise<void>) => {
    if (stopped) return;
    timer = setTimeout(() => {
      running = run();
    }, ms);
    timer.unref();
  };
  const check = async (): Promise<void> => {
    if ((await findGateway(options)) !== null) return schedule(intervalMs, check);
    if (stopped) return;
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
      return running;
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
