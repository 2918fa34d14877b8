// Builds dist/esm (ES modules) and dist/cjs (CommonJS), each with its .d.ts files and a
// package.json saying which module system it is, from the same sources.
import { execFileSync } from "node:child_process";
import { chmodSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";

const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
rmSync("dist", { recursive: true, force: true });
for (const [config, type] of [
  ["tsconfig.json", "module"],
  ["tsconfig.cjs.json", "commonjs"],
]) {
  execFileSync(process.execPath, [tsc, "-p", config], { stdio: "inherit" });
  const dir = type === "module" ? "dist/esm" : "dist/cjs";
  writeFileSync(`${dir}/package.json`, JSON.stringify({ type }) + "\n");
}
chmodSync("dist/cjs/cli.js", 0o755);
