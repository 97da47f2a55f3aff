"""Where Hot's time goes: py-spy samples every process of the workflow benchmark.

Runs N 3-step order workflows (bench/handlers.py) through PostgreSQL + Redis + one
`celery -A hotproject worker` (prefork) as bench/workflow.py does, with `py-spy record` attached to
the worker (main process and children) and to the sending process. Prints, per process group,
the time per step spent holding the GIL (Python's CPU time; waits on sockets release it), where
it goes by component (from each sample's innermost frame) and the functions with the most
inclusive and own time.

    .venv/bin/pip install -q -e '.[bench]'
    .venv/bin/python bench/profile.py [--workflows 3000] [--rate 200] [--top 20]
"""

import argparse
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import harness  # noqa: E402

# Component of a frame, by its file: first match wins.
COMPONENTS = [
    ("runtime/trace_recorder.py", "tracer"),
    ("/runtime/", "runtime"),
    ("/bench/", "handlers (user code)"),
    ("/django/db/", "Django ORM"),
    ("/django/", "Django other"),
    ("/psycopg", "psycopg"),
    ("/celery/", "Celery"),
    ("/kombu/", "kombu"),
    ("/billiard/", "billiard"),
    ("/redis/", "redis-py"),
    ("/json/", "json"),
]


def component(frame: str) -> str:
    for needle, name in COMPONENTS:
        if needle in frame:
            return name
    return "Python stdlib / other"


def parse(path: Path, main_pid: int | None = None) -> dict[str, Counter]:
    """py-spy's raw output ('frame;frame;… count' per line, outermost first) grouped by process:
    {group: Counter of stacks}."""
    groups: dict[str, Counter] = {}
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        group = "sender"
        pid = None
        # With --subprocesses the stack starts with the process and its parents, outermost
        # first ('process 123:"cmd"').
        while frames and frames[0].startswith("process "):
            pid = int(frames.pop(0).split()[1].split(":")[0])
        if pid is not None:
            group = "celery main process" if pid == main_pid else "worker children"
        if frames:
            groups.setdefault(group, Counter())[tuple(frames)] += int(count)
    return groups


def report(group: str, stacks: Counter, rate: int, steps: int, top: int) -> None:
    samples = sum(stacks.values())
    busy_ms = samples / rate * 1000
    print(f"\n{group}: {busy_ms / 1000:.2f} s holding the GIL, {busy_ms / steps:.3f} ms per step")
    by_component: Counter = Counter()
    inclusive: Counter = Counter()
    own: Counter = Counter()
    for frames, count in stacks.items():
        by_component[component(frames[-1])] += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    for name, count in by_component.most_common():
        print(f"  {100 * count / samples:5.1f}%  {count / rate * 1000 / steps:.3f} ms/step  {name}")
    ours = Counter({frame: n for frame, n in inclusive.items() if "runtime/" in frame})
    for title, counter in (("inclusive", inclusive), ("own", own), ("runtime/ inclusive", ours)):
        print(f"  top {top} functions by {title} time:")
        for frame, count in counter.most_common(top):
            print(f"  {100 * count / samples:5.1f}%  {frame[:110]}")


def cpu_by_process(worker_pid: int) -> Counter:
    """CPU seconds (user + system, from /proc) so far of the worker's main process, its
    children, this process, and every PostgreSQL and Redis server process on the machine."""
    tick = os.sysconf("SC_CLK_TCK")
    children = set(Path(f"/proc/{worker_pid}/task/{worker_pid}/children").read_text().split())
    seconds: Counter = Counter()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process ended
            continue
        pid, name = stat.parent.name, text[text.index("(") + 1 : text.rindex(")")]
        fields = text[text.rindex(")") + 2 :].split()
        used = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        if int(pid) == worker_pid:
            seconds["celery main process"] += used
        elif pid in children:
            seconds["worker children"] += used
        elif int(pid) == os.getpid():
            seconds["sender"] += used
        elif name == "postgres":
            seconds["PostgreSQL"] += used
        elif name.startswith("redis-server"):
            seconds["Redis"] += used
    return seconds


def py_spy(pid: int, out: Path, rate: int, subprocesses: bool) -> subprocess.Popen:
    command = [
        str(Path(sys.executable).with_name("py-spy")),
        "record",
        "--pid",
        str(pid),
        "--rate",
        str(rate),
        "--format",
        "raw",
        "--nonblocking",  # don't pause the sampled process: the figures stay close to real
        "--gil",  # only samples holding the GIL: Python's CPU time, not waits on sockets
        "-o",
        str(out),
    ]
    if subprocesses:
        command.append("--subprocesses")
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
    proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workflows", type=int, default=3000)
    parser.add_argument("--rate", type=int, default=200, help="samples per second")
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()

    harness.configure()
    harness.recreate_database()
    from hotapp.models import Run, RunStatus
    from runtime import send

    harness.reset_state()
    worker_out = Path("/tmp/hot-profile-worker.txt")
    sender_out = Path("/tmp/hot-profile-sender.txt")
    with harness.workers(concurrency=2) as worker:
        main_pid = worker.pid
        send("bench:order:created", {"order_id": 0, "items": [{"price": 1}]})  # warm up
        harness.wait_until(lambda: Run.objects.filter(status=RunStatus.SUCCEEDED).count() == 3, 60)
        harness.reset_state()
        spies = [
            py_spy(worker.pid, worker_out, args.rate, subprocesses=True),
            py_spy(os.getpid(), sender_out, args.rate, subprocesses=False),
        ]
        time.sleep(1.0)  # py-spy attaches
        cpu_before = cpu_by_process(main_pid)
        start = time.perf_counter()
        for i in range(1, args.workflows + 1):
            send("bench:order:created", {"order_id": i, "items": [{"price": 10}, {"price": 5}]})
        sent = time.perf_counter()
        done = Run.objects.filter(
            function="bench.handlers.bench_order_shipped", status=RunStatus.SUCCEEDED
        )
        end = harness.wait_until(lambda: done.count() == args.workflows, 3600, poll=0.25)
        cpu = cpu_by_process(main_pid)
        cpu.subtract(cpu_before)
        for spy in spies:
            stop(spy)
    steps = 3 * args.workflows
    print(
        f"{args.workflows} workflows ({steps} steps) in {end - start:.2f} s under py-spy "
        f"({args.workflows / (end - start):.1f} workflows/s; sending took {sent - start:.2f} s); "
        f"{args.rate} samples/s per process, counting only samples holding the GIL"
    )
    print("CPU per step from /proc (py-spy's own sampling included; whole machine for servers):")
    for group, seconds in cpu.most_common():
        print(f"  {group:20s} {seconds * 1000 / steps:6.3f} ms per step  ({seconds:.2f} s)")
    groups = parse(worker_out, main_pid)
    groups.update(parse(sender_out))
    for group in ("worker children", "celery main process", "sender"):
        if group in groups:
            report(group, groups[group], args.rate, steps, args.top)


if __name__ == "__main__":
    main()
