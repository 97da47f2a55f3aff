"""Handlers for bench/flow.py: trivial work, with and without flow control. Loaded only by that
benchmark: a flow-controlled handler in a worker costs each drain one probe (runtime.flow_claim),
which the other benchmarks must not pay."""

from runtime import on_event


@on_event("bench:flow:free")
def bench_flow_free(event):
    return {"n": event.data["n"]}


@on_event("bench:flow:one-key", concurrency=4)
def bench_flow_one_key(event):
    return {"n": event.data["n"]}


@on_event("bench:flow:per-customer", concurrency=1, key="data.customer")
def bench_flow_per_customer(event):
    return {"n": event.data["n"]}


@on_event("bench:flow:serial", concurrency=1)
def bench_flow_serial(event):
    return {"n": event.data["n"]}


@on_event("bench:flow:rated", rate_limit="100000/m", key="data.customer")
def bench_flow_rated(event):
    return {"n": event.data["n"]}
