"""Flow control on SQLite (the embedded default): the limits, the holds and debounce."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_flow_control_holds_its_limits_on_sqlite(tmp_path):
    env = {**os.environ, "HOT_DATA_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "tests/flow_sqlite_check.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith("ok")
