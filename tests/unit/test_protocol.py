"""The Python↔Lua protocol has one home: the scripts read names, never positions.

Every op and output travels by the order of its `NamedTuple`; the Lua prelude generated
from those same definitions is the only code that counts positions. These tests hold the
layers to that: the core never imports the Redis adapter, no script indexes the packed ops
by hand, and no opcode letter survives outside the protocol.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from charger.protocol import fields, lua, ops, outputs
from charger.store.scripts import APPLY_PARTS, apply_source, read_source
from tests.kit.imports import absolute_imports_of

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ROOT / "src" / "charger"
CORE = ("charging", "rating", "events", "protocol")
LUA_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]*$")


@pytest.mark.parametrize("package", CORE)
def test_the_core_never_imports_an_adapter(package: str) -> None:
    adapters = ("charger.store", "charger.kafka", "redis", "faust", "charger.runtime")
    offenders = {
        f"{path.relative_to(ROOT)}: {module}"
        for path in (PRODUCT / package).rglob("*.py")
        for module in absolute_imports_of(path)
        if module.startswith(adapters)
    }
    assert offenders == set()


@pytest.mark.parametrize("kind", list(ops.SHAPES))
def test_an_op_names_its_keys_first_and_takes_no_reserved_name(kind: type[ops.AnyOp]) -> None:
    shape = ops.SHAPES[kind]
    names = list(kind._fields)
    assert all(LUA_IDENTIFIER.match(name) for name in names)
    assert not set(names) & ops.RESERVED_NAMES
    keys = [name for name in names if name.endswith("_key")]
    assert names[: shape.key_count] == keys  # the keys, and only they, come first


def test_every_op_and_output_has_its_reader_or_emitter_in_the_prelude() -> None:
    prelude = lua.apply_prelude()
    for kind, shape in ops.SHAPES.items():
        reader = prelude[prelude.index(f"READ_OP[{int(shape.opcode)}] = function") :]
        reader = reader[: reader.index("\nend")]
        for name in kind._fields:
            assert f"  op.{name} = op_" in reader, (kind.__name__, name)  # set for every op
        if shape.traced:
            assert "  op.trace = op_values[" in reader, kind.__name__
    for code, output_type in outputs.TYPES.items():
        # every field but the last, the trace context the script adds from the op's
        *fields, cause = output_type._fields
        assert cause == outputs.CAUSE_FIELD
        parameters = ", ".join(fields)
        assert f"local function emit_{code.name.lower()}({parameters})" in prelude
        emitter = prelude[prelude.index(f"local function emit_{code.name.lower()}(") :]
        assert emitter[: emitter.index("\nend")].endswith(", cause_trace}")


def test_only_a_tick_carries_no_trace_context() -> None:
    untraced = {kind for kind, shape in ops.SHAPES.items() if not shape.traced}
    assert untraced == {ops.Tick}


def test_opcodes_and_output_kinds_are_distinct_numbers() -> None:
    assert len({int(shape.opcode) for shape in ops.SHAPES.values()}) == len(ops.SHAPES)
    assert len({int(kind) for kind in outputs.TYPES}) == len(outputs.TYPES)


def lua_files() -> list[Path]:
    return sorted((PRODUCT / "lua").rglob("*.lua"))


def test_the_scripts_are_assembled_from_every_file_and_no_other() -> None:
    apply_files = {path.stem for path in (PRODUCT / "lua" / "apply").glob("*.lua")}
    assert apply_files == set(APPLY_PARTS)
    assert "HANDLE[OPCODE." in apply_source() and "CALL_READ_FIELDS" in read_source()


@pytest.mark.parametrize("path", lua_files(), ids=lambda path: path.name)
def test_no_script_indexes_the_packed_ops_or_arguments_by_hand(path: Path) -> None:
    text = path.read_text()
    assert not re.search(r"\b[AK]\[", text)
    assert not re.search(r"\b(op_values|op_keys|ARGV|KEYS)\[", text)


def test_no_single_letter_opcode_outside_the_protocol() -> None:
    letter = re.compile(r"""["'][UESPAGKDTLRCXQF]["']""")
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in [*PRODUCT.rglob("*.py"), *lua_files()]
        if "protocol" not in path.parts
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if letter.search(line)
    ]
    assert offenders == []


def test_the_scripts_use_only_declared_hash_fields() -> None:
    # A field a script writes is a name of the prelude, never a string of its own.
    for path in lua_files():
        for field in re.findall(r"HSET', [a-z_.]+, '(\w+)'", path.read_text()):
            pytest.fail(f"{path.name}: literal field {field!r}")
    declared = {f.value for f in fields.AccountField} | {f.value for f in fields.CallField}
    assert {f.value for f in fields.CALL_FIELDS} <= declared


@pytest.mark.parametrize(
    ("account", "request_id", "number"),
    [
        ("acc-42", "rq-acc-42-7", 7),
        ("acc-42", "rq-acc-42-120", 120),
        ("acc", "rq-acc-42-7", None),  # another account's request (acc-42's)
        ("acc-42", "rq-acc-4-7", None),
        ("acc-42", "rq-acc-42-", None),
        ("acc-42", "rq-acc-42-07", None),  # the worker never writes a leading zero
        ("acc-42", "rq-acc-42-7x", None),
        ("acc-42", "nobody-7", None),
    ],
)
def test_request_numbers_are_read_only_from_ids_the_account_makes(
    account: str, request_id: str, number: int | None
) -> None:
    assert fields.request_number(account, request_id) == number
