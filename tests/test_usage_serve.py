"""`mini-llm serve` as a real process: SIGTERM during load loses no ledger row (rows = requests
answered), and `mini-llm usage` reads them back."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from .harness import clean_env, http, start_serve


def test_sigterm_during_load_loses_no_ledger_row(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = clean_env(MINI_LLM_DATA_DIR=str(data_dir), MINI_LLM_LOG_LEVEL="warning")
    served = start_serve("--port", "0", env=env)
    answered: list[int] = []
    failed: list[str] = []
    stop = threading.Event()
    body = json.dumps(
        {"model": "mock/slow", "messages": [{"role": "user", "content": "hello there"}]}
    ).encode()

    def client() -> None:
        for _ in range(400):  # bounded
            if stop.is_set():
                return
            try:
                status, _, _ = http("POST", served.url + "/v1/chat/completions", body, timeout=20)
            except OSError as e:
                failed.append(type(e).__name__)  # refused once the gateway stopped listening
                return
            answered.append(status)

    threads = [threading.Thread(target=client) for _ in range(8)]
    try:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 20
        while len(answered) < 40 and time.monotonic() < deadline:
            time.sleep(0.02)
        served.proc.send_signal(signal.SIGTERM)
        assert served.proc.wait(30) == 0
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        if served.proc.poll() is None:
            served.proc.kill()
            served.proc.wait(5)
        if served.proc.stdout is not None:
            served.proc.stdout.close()
    assert len(answered) >= 40
    with sqlite3.connect(data_dir / "mini-llm.db") as db:
        rows = db.execute("SELECT COUNT(*), SUM(status = 200) FROM usage_records").fetchone()
    # every answered request has its row; a request cut by the stop may have one too (the
    # gateway answered it, the client did not read it), never more than those
    assert len(answered) <= rows[0] <= len(answered) + len(failed)
    assert answered.count(200) <= rows[1] <= answered.count(200) + len(failed)

    # and `mini-llm usage` reads them
    done = subprocess.run(
        [sys.executable, "-m", "mini_llm", "usage", "--by", "model", "--since", "7d", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["total"]["requests"] == len(answered)
    (row,) = report["rows"]
    assert row["model"] == "mock/slow" and row["cost_usd"] is None
    assert report["unpriced_models"] == ["mock/slow"]
    table = subprocess.run(
        [sys.executable, "-m", "mini_llm", "usage", "--by", "model", "--since", "7d"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert table.returncode == 0 and "mock/slow" in table.stdout
    assert "P95 ms" in table.stdout and "unpriced" in table.stdout
