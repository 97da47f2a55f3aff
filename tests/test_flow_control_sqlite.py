"""Flow control on SQLite (the embedded default): the limits, the holds and debounce."""

from tests.conftest import on_sqlite


def test_flow_control_holds_its_limits_on_sqlite(tmp_path):
    done = on_sqlite(["tests/flow_sqlite_check.py"], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith("ok")
