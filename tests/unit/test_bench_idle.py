"""The API benchmark's wake-up latency bound: the value the kernel's PM QoS interface
reads, held exactly as long as the block, and a clear answer where there is none."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from charger_tools.bench.idle import wake_up_latency_bound


@pytest.mark.parametrize("microseconds", [0, 1, 20])
def test_the_bound_is_written_as_a_native_int_and_released_with_the_block(
    tmp_path: Path, microseconds: int
) -> None:
    device = tmp_path / "cpu_dma_latency"
    device.touch()
    with wake_up_latency_bound(microseconds, device) as held:
        assert held == "held"
        assert device.read_bytes() == struct.pack("i", microseconds)
        assert device in open_files()
    # The kernel keeps the bound while the file is open: closed with the block.
    assert device not in open_files()


def open_files() -> set[Path]:
    fds = Path("/proc/self/fd")
    targets = set()
    for fd in fds.iterdir():
        try:
            targets.add(Path(fd.readlink()))
        except OSError:
            continue  # the descriptor iterdir itself used, already closed
    return targets


def test_a_machine_without_the_interface_is_named(tmp_path: Path) -> None:
    with wake_up_latency_bound(0, tmp_path / "absent") as held:
        assert held == "no such device"


def test_a_negative_bound_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 0"), wake_up_latency_bound(-1, tmp_path / "x"):
        pass
