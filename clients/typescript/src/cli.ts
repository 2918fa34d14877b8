#!/usr/bin/env node
/**
 * `mini-llm-gateway`: print the shared gateway's URL, starting it if needed (for shell scripts:
 * `OPENAI_BASE_URL=$(npx mini-llm-gateway)/v1`). `--status`: print it only if one runs (exit 3
 * if not); `--stop`: stop it. Options: --port N, --state-dir DIR, --python PATH, --config FILE.
 */

import { MiniLLMError } from "./errors.js";
import { ensureGateway, findGateway, stopGateway, type GatewayOptions } from "./gateway.js";

const USAGE =
  "usage: mini-llm-gateway [--status | --stop] [--port N] [--state-dir DIR] [--python PATH] [--config FILE]";

async function main(argv: string[]): Promise<number> {
  const options: GatewayOptions = {};
  let action: "ensure" | "status" | "stop" = "ensure";
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const value = () => {
      const next = argv[++i];
      if (next === undefined) throw new UsageError(`${arg} needs a value`);
      return next;
    };
    if (arg === "--status") action = "status";
    else if (arg === "--stop") action = "stop";
    else if (arg === "--port") {
      const port = Number(value());
      if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError("--port must be 0-65535");
      options.port = port;
    } else if (arg === "--state-dir") options.stateDir = value();
    else if (arg === "--python") options.python = value();
    else if (arg === "--config") options.configPath = value();
    else if (arg === "-h" || arg === "--help") {
      console.log(USAGE);
      return 0;
    } else throw new UsageError(`unknown argument ${arg}`);
  }
  if (action === "status") {
    const found = await findGateway(options);
    if (!found) return 3;
    console.log(found.state.url);
    return 0;
  }
  if (action === "stop") {
    const stopped = await stopGateway(options);
    console.log(stopped ? `stopped gateway pid ${stopped.pid}` : "no gateway was running");
    return 0;
  }
  console.log(await ensureGateway(options));
  return 0;
}

class UsageError extends Error {}

main(process.argv.slice(2)).then(
  (code) => (process.exitCode = code),
  (e: unknown) => {
    if (e instanceof UsageError) {
      console.error(`mini-llm-gateway: ${e.message}\n${USAGE}`);
      process.exitCode = 2;
    } else if (e instanceof MiniLLMError) {
      console.error(`mini-llm-gateway: ${e.message}`);
      process.exitCode = 1;
    } else throw e;
  },
);
