"""The lineage graph of one workflow (stream): events and runs in layers, laid out as an SVG.

Layer 0 (the top row) holds the events that started the stream; each run sits one layer below
the event that triggered it, and each event one layer below the run that sent it. Retries of a
run share its layer, side by side.

A rerun starts a stream of its own but keeps the event of the run it repeats, which lives in
the earlier stream: that event and the repeated run are drawn too, marked as from another
workflow, with a dashed "rerun" edge from the repeated run to its rerun.
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
    is_external: bool = False  # from another stream: a rerun's event and the run it repeats

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
    kind: str = "flow"  # "flow": triggered or sent; "rerun": the target repeats the source

    @property
    def path(self) -> str:
        if self.source.layer == self.target.layer:  # side by side: from one's side to the other's
            left, right = sorted((self.source, self.target), key=lambda n: n.x)
            y = left.y + NODE_HEIGHT // 2
            return f"M{left.x + NODE_WIDTH},{y} L{right.x},{y}"
        x1, y1 = self.source.x + NODE_WIDTH // 2, self.source.y + NODE_HEIGHT
        x2, y2 = self.target.x + NODE_WIDTH // 2, self.target.y
        mid = (y1 + y2) // 2
        return f"M{x1},{y1} C{x1},{mid} {x2},{mid} {x2},{y2}"

    @property
    def middle(self) -> tuple[int, int]:
        """Where the edge's label goes: half way, just above the line."""
        x1, x2 = self.source.x + NODE_WIDTH // 2, self.target.x + NODE_WIDTH // 2
        if self.source.layer == self.target.layer:
            return (x1 + x2) // 2, self.source.y + NODE_HEIGHT // 2 - 5
        return (x1 + x2) // 2, (self.source.y + NODE_HEIGHT + self.target.y) // 2 - 5


@dataclass
class Graph:
    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    width: int = 0
    height: int = 0
    is_cut: bool = False  # more than MAX_NODES in the stream


EVENT_FIELDS = ("id", "type", "source_run_id", "is_handled", "created_at")  # no payloads
RUN_FIELDS = ("id", "function", "status", "attempt", "event_id", "rerun_of_id", "created_at")


def stream_graph(stream_id: uuid.UUID, focus_id: uuid.UUID | None = None) -> Graph:
    events = list(
        Event.objects.filter(stream_id=stream_id)
        .only(*EVENT_FIELDS)
        .order_by("created_at", "id")[:MAX_NODES]
    )
    runs = list(
        Run.objects.filter(stream_id=stream_id)
        .only(*RUN_FIELDS)
        .order_by("created_at", "id")[:MAX_NODES]
    )
    graph = Graph(is_cut=len(events) >= MAX_NODES or len(runs) >= MAX_NODES)
    event_nodes = {e.id: Node("event", e, is_focus=e.id == focus_id) for e in events}
    run_nodes = {r.id: Node("run", r, is_focus=r.id == focus_id) for r in runs}
    # Reruns: the event they keep and the run they repeat, both of an earlier stream.
    reruns = [r for r in runs if r.rerun_of_id]
    repeated_ids = {r.rerun_of_id for r in reruns} - run_nodes.keys()
    for run in Run.objects.filter(id__in=repeated_ids).only(*RUN_FIELDS):
        run_nodes[run.id] = Node("run", run, is_external=True)
    missing_events = {n.obj.event_id for n in run_nodes.values() if n.obj.event_id}
    for event in Event.objects.filter(id__in=missing_events - event_nodes.keys()).only(
        *EVENT_FIELDS
    ):
        event_nodes[event.id] = Node("event", event, is_external=True)
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
    for run in reruns:
        if run.rerun_of_id in run_nodes:
            graph.edges.append(Edge(run_nodes[run.rerun_of_id], run_nodes[run.id], "rerun"))
    layers = max(rows, default=0) + 1
    widest = max(rows.values(), default=1)
    graph.width = 2 * PAD + widest * NODE_WIDTH + (widest - 1) * GAP_X
    graph.height = 2 * PAD + layers * NODE_HEIGHT + (layers - 1) * GAP_Y
    return graph
