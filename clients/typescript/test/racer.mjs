// One racer of the concurrency tests: signals it is ready, waits for the go file, then asks
// for the shared gateway and prints its URL. Usage: node racer.mjs GO_FILE READY_FILE
import { existsSync, writeFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";

import { ensureGateway } from "../dist/esm/index.js";

const [go, ready] = process.argv.slice(2);
writeFileSync(ready, "");
const deadline = Date.now() + 60_000;
while (!existsSync(go)) {
  if (Date.now() > deadline) {
    console.error("no go signal");
    process.exit(1);
  }
  await sleep(2);
}
console.log(await ensureGateway({ port: 0, timeoutMs: 60_000 }));
