/** The identity check: `GET /health`, and whether the process answering is the published one. */

import { request } from "node:http";

import { parentPid, pidAlive, type GatewayState } from "./state.js";

export interface Health {
  status: string;
  pid: number;
  version: string;
  uptime_s?: number;
  shutdown_grace_s?: number;
  config_fingerprint?: string;
  [field: string]: unknown;
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

export async function probe(state: GatewayState, timeoutMs?: number): Promise<Health | null> {
  if (!pidAlive(state.pid)) return null;
  const health = await fetchHealth(state.url, timeoutMs);
  return health && sameGateway(health.pid, state.pid) ? health : null;
}

/** Whether `/health`'s pid is the published gateway: itself, or one of its workers
 * (`serve --workers N` answers from forked children of the published pid). */
export function sameGateway(answering: unknown, published: number): boolean {
  if (typeof answering !== "number" || !Number.isInteger(answering)) return false;
  return answering === published || parentPid(answering) === published;
}
