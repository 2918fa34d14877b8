/**
 * The shared gateway's published state (`gateway.json`), where it lives, and the process
 * checks readers need. The format is docs/LOCAL-GATEWAY.md in the mini-llm repository.
 */

import { mkdirSync, readFileSync, statSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

export const STATE_FILE = "gateway.json";
export const LOCK_FILE = "gateway.lock";
export const LOG_FILE = "gateway.log";

/** What a running gateway publishes. Fields after `started_at` say how it was started. */
export interface GatewayState {
  pid: number;
  host: string;
  port: number;
  url: string;
  version: string;
  started_at: number;
  config_path: string | null;
  flags: Record<string, unknown>;
  key_env: string[];
  config_fingerprint: string | null;
}

export type Env = Record<string, string | undefined>;

/** `$MINI_LLM_STATE_DIR`, else `$XDG_RUNTIME_DIR/mini-llm` (if that directory exists), else
 * `$XDG_STATE_HOME/mini-llm`, else `~/.local/state/mini-llm`. */
export function defaultStateDir(env: Env = process.env): string {
  const explicit = env.MINI_LLM_STATE_DIR;
  if (explicit) return expandHome(explicit);
  const runtime = env.XDG_RUNTIME_DIR;
  if (runtime && isDirectory(runtime)) return join(runtime, "mini-llm");
  const stateHome = env.XDG_STATE_HOME || join(homedir(), ".local", "state");
  return join(expandHome(stateHome), "mini-llm");
}

export function ensureDir(path: string): void {
  mkdirSync(path, { recursive: true, mode: 0o700 });
}

/** The published state, or null when the file is missing or not a complete record. */
export function readState(path: string): GatewayState | null {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, "utf8"));
  } catch {
    return null;
  }
  if (raw === null || typeof raw !== "object") return null;
  const r = raw as Record<string, unknown>;
  const pid = r.pid;
  const port = r.port;
  if (!Number.isInteger(pid) || !Number.isInteger(port)) return null;
  if (typeof r.host !== "string" || typeof r.url !== "string") return null;
  if (typeof r.version !== "string" || typeof r.started_at !== "number") return null;
  // optional: written by older gateways without them
  const flags = r.flags !== null && typeof r.flags === "object" ? r.flags : {};
  return {
    pid: pid as number,
    host: r.host,
    port: port as number,
    url: r.url,
    version: r.version,
    started_at: r.started_at,
    config_path: typeof r.config_path === "string" && r.config_path ? r.config_path : null,
    flags: flags as Record<string, unknown>,
    key_env: Array.isArray(r.key_env) ? r.key_env.map(String) : [],
    config_fingerprint:
      typeof r.config_fingerprint === "string" && r.config_fingerprint
        ? r.config_fingerprint
        : null,
  };
}

/** Whether `pid` is a live process (a zombie not yet reaped counts as dead). */
export function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (e) {
    // EPERM: alive, but another user's
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
  const stat = procStat(pid);
  if (stat === null) return true; // no procfs: trust kill(0)
  const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
  return state !== "Z" && state !== "X";
}

/** The parent of `pid` (Linux procfs), or null when it cannot be read. */
export function parentPid(pid: number): number | null {
  const stat = procStat(pid);
  if (stat === null) return null;
  // the fields after the parenthesised command name (which may hold spaces): state, ppid
  const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
  return Number.isInteger(ppid) ? ppid : null;
}

/** The command line of `pid` (Linux procfs), or null when it cannot be read. */
export function processCmdline(pid: number): string[] | null {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "latin1").split("\0").filter(Boolean);
  } catch {
    return null;
  }
}

function procStat(pid: number): string | null {
  try {
    return readFileSync(`/proc/${pid}/stat`, "latin1");
  } catch {
    return null;
  }
}

function expandHome(path: string): string {
  return path === "~" || path.startsWith("~/") ? join(homedir(), path.slice(1)) : path;
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}
