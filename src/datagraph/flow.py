"""Flows: processors wired together by the names of the streams they share."""

from __future__ import annotations

import difflib
import re
from typing import TYPE_CHECKING, Self

from ._plan import Plan
from .exceptions import (
    CycleError,
    DeclarationError,
    DuplicateProcessorError,
    DuplicateProducerError,
    FlowError,
    RegistrationError,
    UnknownStreamError,
    UnresolvedFlowError,
)
from .processor import Processor, _registry
from .viz import to_dot, to_graph, to_mermaid, to_text

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

__all__ = ("Flow", "near_name")


class Flow:
    """A set of processors; a stream written by one and read by another joins them.

    Streams that no processor writes are the flow's **inputs**, given when a run
    starts; streams that no processor reads are its **outputs**. Call
    ``resolve()`` once to validate the graph before starting runs.

    Args:
        processors: the processors of the flow.
        inputs: streams declared as inputs of the flow. Optional: any stream no
            processor writes is an input. Declaring one says its name is meant,
            where ``resolve()`` would otherwise take a name close to a written
            stream's (``odd`` next to ``odds``) for a typo.

    Raises:
        DeclarationError: ``processors`` holds something else than ``Processor``
            declarations, or ``inputs`` is a string.
        DuplicateProcessorError: two different processors share a name.
        FlowError: there is no processor.
    """

    __slots__ = ("_declared_inputs", "_plan", "processors")

    def __init__(
        self, processors: Iterable[Processor], *, inputs: Iterable[str] = ()
    ) -> None:
        unique: dict[str, Processor] = {}
        for item in tuple[object, ...](processors):
            if not isinstance(item, Processor):
                msg = f"a flow is made of Processor declarations, got {item!r}"
                raise DeclarationError(msg)
            proc = item
            known = unique.setdefault(proc.name, proc)
            if known != proc:
                raise DuplicateProcessorError(proc.name)
        if not unique:
            msg = "a flow needs at least one processor"
            raise FlowError(msg)
        #: The processors, in the order given.
        self.processors: tuple[Processor, ...] = tuple(unique.values())
        if isinstance(inputs, str):
            msg = f"inputs of a flow are a list of stream names: write [{inputs!r}]"
            raise DeclarationError(msg)
        self._declared_inputs = tuple(dict.fromkeys(inputs))
        self._plan: Plan | None = None

    @classmethod
    def from_processors(
        cls, *processors: Processor, inputs: Iterable[str] = ()
    ) -> Self:
        """Build a flow of the given processors (``inputs``: see ``Flow``)."""
        return cls(processors, inputs=inputs)

    @classmethod
    def from_tasks(cls, *processors: Processor, inputs: Iterable[str] = ()) -> Self:
        """Build a flow of the given processors (alias of ``from_processors``)."""
        return cls(processors, inputs=inputs)

    def __repr__(self) -> str:
        names = ", ".join(p.name for p in self.processors)
        state = "resolved" if self._plan else "unresolved"
        return f"<Flow {state} [{names}]>"

    def resolve(self) -> Self:
        """Check that the flow can run, and fix its inputs and outputs.

        Returns:
            The flow itself, so ``Flow.from_processors(...).resolve()`` reads well.

        Raises:
            DuplicateProducerError: two processors write one stream.
            UnknownStreamError: a processor reads a stream that no processor
                writes, not declared as an input, whose name is close to one a
                processor writes (a typo, most likely).
            FlowError: a declared input is written by a processor, or read by
                none.
            CycleError: processors feed each other in a loop.
            RegistrationError: the implementation registered in this process for a
                processor was registered for a different declaration of it.
        """
        producers: dict[str, str] = {}
        for proc in self.processors:
            for stream in proc.outputs:
                if stream in producers:
                    raise DuplicateProducerError(stream, [producers[stream], proc.name])
                producers[stream] = proc.name
        self._check_inputs(producers)
        for proc in self.processors:
            impl = _registry.get(proc.name)
            if impl is not None and impl.processor != proc:
                msg = (
                    f"processor {proc.name!r} in this flow is declared as {proc!r}, "
                    f"but its implementation was registered for {impl.processor!r}"
                )
                raise RegistrationError(msg)
        order = _topological_order(self.processors, producers)
        read = {s for p in self.processors for s in p.inputs}
        inputs = dict.fromkeys(s for p in order for s in p.inputs if s not in producers)
        outputs = dict.fromkeys(s for p in order for s in p.outputs if s not in read)
        self._plan = Plan(
            processors=tuple(order), inputs=tuple(inputs), outputs=tuple(outputs)
        )
        return self

    def _check_inputs(self, producers: dict[str, str]) -> None:
        """Refuse declared inputs that cannot be, and undeclared near misses."""
        read = {s for p in self.processors for s in p.inputs}
        for stream in self._declared_inputs:
            if stream in producers:
                msg = (
                    f"{stream!r} is declared as an input of the flow, but processor "
                    f"{producers[stream]!r} writes it"
                )
                raise FlowError(msg)
            if stream not in read:
                msg = (
                    f"{stream!r} is declared as an input of the flow, but no "
                    "processor reads it"
                )
                raise FlowError(msg)
        for proc in self.processors:
            for stream in proc.inputs:
                if stream in producers or stream in self._declared_inputs:
                    continue
                suggestion = near_name(stream, producers)
                if suggestion is not None:
                    raise UnknownStreamError(
                        processor=proc.name, stream=stream, suggestion=suggestion
                    )

    @property
    def resolved(self) -> bool:
        """Whether ``resolve()`` has validated the flow."""
        return self._plan is not None

    @property
    def plan(self) -> Plan:
        """The validated plan runs are started from.

        Raises:
            UnresolvedFlowError: ``resolve()`` was not called.
        """
        if self._plan is None:
            names = ", ".join(repr(p.name) for p in self.processors)
            msg = (
                f"the flow of {names} is not resolved; call flow.resolve() before "
                "starting it (it validates the graph once)"
            )
            raise UnresolvedFlowError(msg)
        return self._plan

    @property
    def inputs(self) -> tuple[str, ...]:
        """The streams a run must be started with."""
        return self.plan.inputs

    @property
    def outputs(self) -> tuple[str, ...]:
        """The streams no processor of the flow reads."""
        return self.plan.outputs

    def to_mermaid(self) -> str:
        """Render the resolved flow as a Mermaid flowchart (see ``datagraph.viz``)."""
        return to_mermaid(to_graph(self))

    def to_dot(self) -> str:
        """Render the resolved flow as Graphviz DOT (see ``datagraph.viz``)."""
        return to_dot(to_graph(self))

    def to_text(self) -> str:
        """Render the resolved flow as plain text for terminals (``datagraph.viz``)."""
        return to_text(to_graph(self))


def near_name(name: str, names: Iterable[str]) -> str | None:
    """Return the one of ``names`` that ``name`` most likely misspells, or None.

    A slip of the keys changes a letter or two of one word: ``odd`` for ``odds``,
    ``numbrs`` for ``numbers``, ``order_item`` for ``order_items``, ``Odds`` for
    ``odds``. Names of different words are different names (``fan_n`` and
    ``fan``, ``idle_n`` and ``idle_c``), and names that differ only in their
    numbers are a series (``part1`` and ``part2``, ``c0`` and ``c10``).
    """
    folded = name.casefold()
    candidates = {
        n.casefold(): n
        for n in names
        if n.casefold() == folded or _may_misspell(name, n)
    }
    found = difflib.get_close_matches(folded, candidates, n=1, cutoff=0.8)
    return candidates[found[0]] if found else None


_NUMBERS = re.compile(r"\d+")
_WORD_BREAKS = re.compile(r"[\s_.:/-]+|(?<=[a-z])(?=[A-Z])")


def _may_misspell(typed: str, meant: str) -> bool:
    """Whether ``typed`` is ``meant`` with a word or two slightly misspelled."""
    typed_words = [w.casefold() for w in _WORD_BREAKS.split(typed)]
    meant_words = [w.casefold() for w in _WORD_BREAKS.split(meant)]
    if len(typed_words) != len(meant_words):
        return False
    slips = [(t, m) for t, m in zip(typed_words, meant_words, strict=True) if t != m]
    return bool(slips) and all(
        _NUMBERS.sub("#", t) != _NUMBERS.sub("#", m)
        and difflib.SequenceMatcher(None, t, m).ratio() >= 0.75
        for t, m in slips
    )


def _topological_order(
    processors: tuple[Processor, ...], producers: dict[str, str]
) -> list[Processor]:
    """Order processors so that each comes after those it reads from.

    A depth-first walk upstream, kept on an explicit stack so that a long chain
    (thousands of processors, e.g. a generated flow) cannot exhaust Python's
    recursion limit.

    Raises:
        CycleError: naming each processor of the loop and the stream it writes.
    """
    by_name = {p.name: p for p in processors}
    order: list[Processor] = []
    done: set[str] = set()
    for root in processors:
        if root.name in done:
            continue
        # Processors being expanded, each with the inputs it has left to follow,
        # and the (reader, input) edges that led from one to the next.
        stack: list[tuple[Processor, Iterator[str]]] = [(root, iter(root.inputs))]
        path: list[tuple[str, str]] = []
        on_path = {root.name}
        while stack:
            proc, streams = stack[-1]
            for stream in streams:
                upstream = producers.get(stream)
                if upstream is None or upstream in done:
                    continue
                path.append((proc.name, stream))
                if upstream in on_path:
                    start = next(i for i, (r, _) in enumerate(path) if r == upstream)
                    # Walk the loop in the direction data flows: who writes what.
                    loop = [(producers[s], s) for _, s in reversed(path[start:])]
                    raise CycleError(loop)
                on_path.add(upstream)
                found = by_name[upstream]
                stack.append((found, iter(found.inputs)))
                break
            else:  # every input followed: it goes after all it reads from
                stack.pop()
                on_path.discard(proc.name)
                done.add(proc.name)
                order.append(proc)
                if stack:
                    path.pop()  # the edge from its reader
    return order
