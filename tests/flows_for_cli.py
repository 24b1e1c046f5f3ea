"""Flows the viz and CLI tests draw, found by import path as a user's would be.

Declarations only: drawing a flow needs no implementation. Processor names start
with ``viz_`` because the processor registry is global to the process.
"""

from __future__ import annotations

from datagraph import Flow, Processor

# The ETL demo's shape: a chain, with a second output (rejects) off the middle.
extract = Processor(name="viz_extract", inputs=["folder"], outputs=["files"])
parse = Processor(name="viz_parse", inputs=["files"], outputs=["records"])
transform = Processor(
    name="viz_transform", inputs=["records"], outputs=["orders", "rejects"]
)
load = Processor(name="viz_load", inputs=["orders"], outputs=["loaded"], retries=2)

etl = Flow.from_processors(extract, parse, transform, load).resolve()

# Every feature a drawing must show: a fan-out (``numbers`` is read by two
# processors), a fan-in (``merge`` reads two streams), a processor that waits for
# complete inputs, and names that need quoting in every format.
ODD = 'the "odd" stream \\ #1 <x> & `y` | end'
double = Processor(name="viz_double", inputs=["numbers"], outputs=["doubled"])
square = Processor(name="viz_square", inputs=["numbers"], outputs=[ODD])
merge = Processor(
    name="viz merge 'all'",
    inputs=["doubled", ODD],
    outputs=["merged", "end"],
    wait=True,
)
audit = Processor(name="viz_audit", inputs=["numbers"], outputs=["audit log"])

shapes = Flow.from_processors(double, square, merge, audit).resolve()


def make_shapes() -> Flow:
    """Return an unresolved flow: the CLI resolves it (a zero-argument factory)."""
    return Flow.from_processors(double, square, merge, audit)


# A loop: resolving it fails with a CycleError.
_loop_a = Processor(name="viz_loop_a", inputs=["ping"], outputs=["pong"])
_loop_b = Processor(name="viz_loop_b", inputs=["pong"], outputs=["ping"])
cyclic = Flow.from_processors(_loop_a, _loop_b)

not_a_flow = 42


def needs_arguments(size: int) -> Flow:
    """Return a flow, but only when given an argument: the CLI cannot call it."""
    del size
    return shapes


def broken_factory() -> Flow:
    """Fail as a user's factory might."""
    msg = "the factory could not reach its config"
    raise RuntimeError(msg)
