"""The Redis store's Lua scripts: filled and checked when the store is imported."""

from __future__ import annotations

import re
import shutil
from importlib.resources import as_file, files
from typing import TYPE_CHECKING

import pytest

from datagraph.exceptions import StoreError
from datagraph.stores._redis_scripts import (
    AppendStatus,
    EntryMark,
    ReadStatus,
    TakeStatus,
    fill,
    placeholders,
    script_sources,
)

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture
def lua_copy(tmp_path: Path) -> Path:
    """A copy of the shipped ``lua/`` folder, to break on purpose."""
    with as_file(files("datagraph.stores") / "lua") as shipped:
        shutil.copytree(shipped, tmp_path / "lua")
    return tmp_path / "lua"


def _break(path: Path, old: str, new: str) -> int:
    """Replace ``old`` once in a script; return the line it is on."""
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return text[: text.index(old)].count("\n") + 1


@pytest.mark.parametrize("cluster", [False, True])
def test_every_placeholder_of_the_shipped_scripts_is_filled(cluster: bool) -> None:
    sources = script_sources(cluster=cluster)
    assert set(sources) == {
        "append",
        "append_at_end",
        "claim",
        "end_stream",
        "read",
        "reopen",
        "set_fields",
        "state",
        "take",
        "trim",
    }
    for name, code in sources.items():
        assert "$" not in code, name
    # Each variant wakes other processes its own way.
    wake = "redis.call('PUBLISH', wake" if cluster else "redis.call('XADD', wake"
    assert all(wake in code for code in sources.values())


def test_every_status_code_appears_in_the_scripts() -> None:
    """Python and Lua agree: each code Python knows, a script can return."""
    with as_file(files("datagraph.stores") / "lua") as folder:
        text = "".join(path.read_text() for path in sorted(folder.glob("*.lua")))
    for prefix, codes in [
        ("APPEND", AppendStatus),
        ("TAKE", TakeStatus),
        ("READ", ReadStatus),
        ("ENTRY", EntryMark),
    ]:
        for code in codes:
            assert re.search(rf"\${prefix}_{code.name}\b", text), code


def test_an_unknown_placeholder_fails_loading_naming_file_and_line(
    lua_copy: Path,
) -> None:
    line = _break(lua_copy / "take.lua", "$TAKE_TAKEN,", "$TAKE_TAKNE,")
    with pytest.raises(StoreError) as excinfo:
        script_sources(cluster=False, root=lua_copy)
    message = str(excinfo.value)
    assert message.startswith(
        f"Lua script lua/take.lua, line {line}: unknown placeholder $TAKE_TAKNE "
    )
    assert "$TAKE_TAKEN" in message  # the known ones are listed


def test_a_typo_in_the_shared_library_fails_both_variants(lua_copy: Path) -> None:
    line = _break(lua_copy / "lib.lua", "$WATCH_TTL_MS)", "$WATCH_TTL)")
    for cluster in (False, True):
        with pytest.raises(
            StoreError, match=rf"lua/lib\.lua, line {line}: .*WATCH_TTL"
        ):
            script_sources(cluster=cluster, root=lua_copy)


def test_a_dollar_that_starts_no_name_fails_loading(lua_copy: Path) -> None:
    _break(lua_copy / "state.lua", "err or ''", "err or '$1'")
    with pytest.raises(StoreError, match=r"lua/state\.lua, line \d+: a '\$'"):
        script_sources(cluster=False, root=lua_copy)


def test_a_missing_script_fails_loading(lua_copy: Path) -> None:
    (lua_copy / "claim.lua").unlink()
    with pytest.raises(StoreError, match=r"cannot read Lua script lua/claim\.lua"):
        script_sources(cluster=True, root=lua_copy)


def test_fill_replaces_whole_names_only() -> None:
    values = {"A": "1", "AB": "2"}
    assert fill("x = $A + $AB", values, "test") == "x = 1 + 2"
    with pytest.raises(StoreError, match=r"line 2: unknown placeholder \$ABC"):
        fill("x = $A\ny = $ABC", values, "test")
    assert placeholders()["APPEND_HELD"] == str(int(AppendStatus.HELD))
