"""A full disk fails the run loudly, keeps the published warehouse, and the next run with
space repairs everything (a real small filesystem: tmpfs, mounted when the tests run as root)."""

from __future__ import annotations

import pytest

from benchmarks.disk_full import can_mount, reference, trial


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    root = tmp_path_factory.mktemp("diskfull")
    if not can_mount(root):
        pytest.skip("mounting a small filesystem needs root")
    return root, reference(root)


@pytest.mark.parametrize(("phase", "size_mb"), [("full", 6), ("incremental", 1)])
def test_a_run_out_of_space_fails_with_the_os_error_and_the_next_repairs(scratch, phase, size_mb):
    root, ref = scratch
    result = trial(root, ref, phase, size_mb)
    assert result["failed"], "the filesystem was not small enough to test anything"
    assert result["failed_with_os_error"], result["error"]
    assert result["previous_warehouse_kept"]
    assert result["debris"] == []
    assert result["repaired_to_reference"], result["repair_problem"]
