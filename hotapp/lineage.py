"""The lineage graph of one workflow (stream): events and runs in layers, laid out as an SVG.

Layer 0 (the top row) holds the events that started the stream; each run sits one layer below
the event that triggered it, and each event one layer below the run that sent it. Retries of a
run share its layer, side by side.
"""

import uuid
from dataclasses import dataclass, field

from hotapp.models import Event, Run

NODE_WIDTH, NODE_HEIGHT = 190, 46
GAP_X, GAP_Y, PAD = 16, 30, 8
MAX_NODES = 300


@dataclass
class Node:
    kind: str  # "event" | "run"
    obj: Event | Run
    layer: int = 0
    row: int = 0
    is_focus: bool = False

    @property
    def x(self) -> int:
        return PAD + self.row * (NODE_WIDTH + GAP_X)

    @property
    def y(self) -> int:
        return PAD + self.layer * (NODE_HEIGHT + GAP_Y)

    @property
    def label(self) -> str:
        if self.kind == "event":
            return self.obj.type
        return self.obj.function.rsplit(".", 1)[-1]


@dataclass
class Edge:
    source: Node
    target: Node

    @property
    def path(self) -> str:
        x1, y1 = self.source.x + NODE_WIDTH // 2, self.source.y + NODE_HEIGHT
        x2, y2 = self.target.x + NODE_WIDTH // 2, self.target.y
        mid = (y1 + y2) // 2
        return f"M{x1},{y1} C{x1},{mid} {x2},{mid} {x2},{y2}"


@dataclass
class Graph:
    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    width: int = 0
    height: int = 0
    is_cut: bool = False  # more than MAX_NODES in the stream


def stream_graph(stream_id: uuid.UUID, focus_id: uuid.UUID | None = None) -> Graph:
    events = list(
        Event.objects.filter(stream_id=stream_id).order_by("created_at", "id")[:MAX_NODES]
    )
    runs = list(
        Run.objects.filter(stream_id=stream_id)
        .only("id", "function", "status", "attempt", "event_id", "origin_run_id", "created_at")
        .order_by("created_at", "id")[:MAX_NODES]
    )
    graph = Graph(is_cut=len(events) >= MAX_NODES or len(runs) >= MAX_NODES)
    event_nodes = {e.id: Node("event", e, is_focus=e.id == focus_id) for e in events}
    run_nodes = {r.id: Node("run", r, is_focus=r.id == focus_id) for r in runs}
    runs_by_event: dict[uuid.UUID, list[Node]] = {}
    for node in run_nodes.values():
        runs_by_event.setdefault(node.obj.event_id, []).append(node)
    events_by_run: dict[uuid.UUID, list[Node]] = {}
    for node in event_nodes.values():
        events_by_run.setdefault(node.obj.source_run_id, []).append(node)

    # Roots: events sent from outside the stream, and runs whose event is elsewhere (a rerun).
    frontier = [n for n in event_nodes.values() if n.obj.source_run_id not in run_nodes]
    frontier += [n for n in run_nodes.values() if n.obj.event_id not in event_nodes]
    placed: set[int] = set()
    for node in frontier:
        node.layer = 0
    while frontier:
        next_frontier = []
        for node in frontier:
            if id(node) in placed:
                continue
            placed.add(id(node))
            graph.nodes.append(node)
            children = (
                runs_by_event.get(node.obj.id, [])
                if node.kind == "event"
                else events_by_run.get(node.obj.id, [])
            )
            for child in sorted(children, key=lambda n: (n.obj.created_at, str(n.obj.id))):
                child.layer = node.layer + 1
                graph.edges.append(Edge(node, child))
                next_frontier.append(child)
        frontier = next_frontier

    rows: dict[int, int] = {}
    for node in graph.nodes:
        node.row = rows.get(node.layer, 0)
        rows[node.layer] = node.row + 1
    layers = max(rows, default=0) + 1
    widest = max(rows.values(), default=1)
    graph.width = 2 * PAD + widest * NODE_WIDTH + (widest - 1) * GAP_X
    graph.height = 2 * PAD + layers * NODE_HEIGHT + (layers - 1) * GAP_Y
    return graph
