"""The README's code: the quickstart is the seed example, the concepts run."""

import ast
import re
from pathlib import Path
from typing import Any

import anyio
import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
BLOCKS: list[str] = re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)
TOP_LEVEL_AWAIT = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT


def block_starting(text: str) -> str:
    (found,) = [b for b in BLOCKS if b.startswith(text)]
    return found


def test_the_quickstart_is_the_tested_seed_example() -> None:
    seed = (ROOT / "examples" / "seed.py").read_text()
    code = seed.split("# fmt: off\n", 1)[1].lstrip("\n")
    assert BLOCKS[0] == code


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.splitlines()[0][:40])
def test_every_block_is_valid_python(block: str) -> None:
    compile(block, "README.md", "exec", flags=TOP_LEVEL_AWAIT)


@pytest.mark.anyio
async def test_the_concepts_examples_run_as_one_flow() -> None:
    namespace: dict[str, Any] = {"__name__": "readme"}
    exec(
        "from collections.abc import AsyncIterator\n"
        "from datagraph import IO, IOVal, Flow, Processor, Supervisor, processor\n",
        namespace,
    )
    for start in (
        "split = ",
        '@processor(inputs=["odds"]',
        '@processor(inputs=["evens"]',
    ):
        exec(block_starting(start), namespace)
    flow = namespace["Flow"].from_processors(
        namespace["split"], namespace["squares"], namespace["total"]
    )
    namespace["flow"] = flow.resolve()
    namespace["supervisor"] = namespace["Supervisor"]()
    runs = compile(block_starting("run = "), "README.md", "exec", flags=TOP_LEVEL_AWAIT)
    with anyio.fail_after(10):
        await eval(runs, namespace)
        assert namespace["squares"] == [1, 9, 25, 49, 81]
        assert await namespace["run"]["total"].collect() == [0 + 2 + 4 + 6 + 8]


@pytest.mark.anyio
async def test_the_testing_example_runs_its_test() -> None:
    namespace: dict[str, Any] = {"__name__": "readme_testing"}
    exec(
        block_starting(
            "from collections.abc import AsyncIterator\nfrom typing import Annotated\n"
        ),
        namespace,
    )
    with anyio.fail_after(10):
        await namespace["test_convert"]()
