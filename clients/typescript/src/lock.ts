/**
 * The machine-wide lock: an exclusive `flock(2)` on `gateway.lock`.
 *
 * Node's standard library has no flock, and a lock must be the very kind Python's
 * `fcntl.flock` takes on the same file, or a Node and a Python caller racing would both
 * start a gateway. So a tiny Python helper (the interpreter that would run the gateway, which a
 * start needs anyway) takes the lock and holds it until its standard input closes: when this
 * process releases the lock, exits or is killed, the pipe closes, the helper exits and the
 * kernel drops the lock. `flock(1)` from util-linux would do the same but is not everywhere;
 * an `fcntl`/`lockf` record lock would not exclude a `flock` at all on Linux.
 */

import { spawn, type ChildProcess } from "node:child_process";

// -I -S: no site packages, no PYTHON* variables, no user code: only the standard library.
const HELPER = `
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
deadline = time.monotonic() + float(sys.argv[2])
while True:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        break
    except BlockingIOError:
        if time.monotonic() > deadline:
            sys.exit(3)
        time.sleep(0.02)
sys.stdout.write("locked\\n")
sys.stdout.flush()
sys.stdin.read()
`;

export class LockTimeoutError extends Error {}

export class FileLock {
  private constructor(private readonly helper: ChildProcess) {}

  /** Wait at most `timeoutMs` for the lock on `path` (created 0600), taken by `python`. */
  static acquire(path: string, timeoutMs: number, python: string): Promise<FileLock> {
    return new Promise((resolve, reject) => {
      const helper = spawn(python, ["-I", "-S", "-c", HELPER, path, String(timeoutMs / 1000)], {
        stdio: ["pipe", "pipe", "pipe"],
      });
      let stderr = "";
      let settled = false;
      helper.stderr!.setEncoding("utf8").on("data", (text: string) => (stderr += text));
      helper.stdout!.setEncoding("utf8").on("data", (text: string) => {
        if (!settled && text.includes("locked")) {
          settled = true;
          resolve(new FileLock(helper));
        }
      });
      helper.on("error", (e) => {
        if (!settled) {
          settled = true;
          reject(new Error(`cannot run ${python} to take the lock ${path}: ${e.message}`));
        }
      });
      helper.on("exit", (code) => {
        if (settled) return;
        settled = true;
        if (code === 3) reject(new LockTimeoutError(`timed out waiting for the lock ${path}`));
        else reject(new Error(`${python} could not take the lock ${path}: ${stderr.trim()}`));
      });
    });
  }

  /** Release the lock; resolves once the helper is gone (the lock is free then). */
  release(): Promise<void> {
    const helper = this.helper;
    if (helper.exitCode !== null || helper.signalCode !== null) return Promise.resolve();
    return new Promise((resolve) => {
      helper.once("exit", () => resolve());
      helper.stdin!.end();
    });
  }
}
