"""The cores a server process may use (server.cores): CPU affinity capped by a cgroup CPU quota, read from cgroup
file systems laid out as the kernel lays them out (v2 unified, v1 per controller, a container's view of either)."""

import os
from pathlib import Path

import pytest

from server.cores import cgroup_cpu_quota, usable_cores

AFFINITY = len(os.sched_getaffinity(0))


def cgroup_files(root: Path, files: dict[str, str]) -> Path:
    """A cgroup mount at ``root`` holding ``files`` (relative path → text); returns ``root``."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    return root


def membership(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "proc-self-cgroup"
    path.write_text(text + "\n")
    return path


def test_v2_the_tightest_quota_of_the_cgroup_and_its_ancestors_applies(tmp_path: Path) -> None:
    root = cgroup_files(tmp_path / "cg", {"cgroup.controllers": "cpu memory", "cpu.max": "max 100000",
                                          "pods/cpu.max": "150000 100000",  # the parent: 1.5 cores
                                          "pods/web/cpu.max": "400000 100000"})  # its own: 4 cores
    proc = membership(tmp_path, "0::/pods/web")
    assert cgroup_cpu_quota(root, proc) == pytest.approx(1.5)
    assert usable_cores(root, proc) == min(AFFINITY, 2)  # 1.5 cores keep two processes busy


def test_v2_inside_a_container_reads_the_mount_root(tmp_path: Path) -> None:
    # With a cgroup namespace the process sees "/", and the mount's root is its own cgroup.
    root = cgroup_files(tmp_path / "cg", {"cgroup.controllers": "cpu", "cpu.max": "100000 100000"})
    assert usable_cores(root, membership(tmp_path, "0::/")) == 1


def test_v1_container_view_where_the_named_path_is_not_mounted(tmp_path: Path) -> None:
    # Docker on cgroup v1 without a namespace: /proc/self/cgroup names the host's path, the mount is the container's.
    root = cgroup_files(tmp_path / "cg", {"cpu,cpuacct/cpu.cfs_quota_us": "50000",
                                          "cpu,cpuacct/cpu.cfs_period_us": "100000"})
    proc = membership(tmp_path, "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/")
    assert cgroup_cpu_quota(root, proc) == pytest.approx(0.5)
    assert usable_cores(root, proc) == 1  # never fewer than one


def test_no_quota_means_the_affinity(tmp_path: Path) -> None:
    v1 = cgroup_files(tmp_path / "v1", {"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"})
    assert usable_cores(v1, membership(tmp_path, "1:cpu:/")) == AFFINITY
    v2 = cgroup_files(tmp_path / "v2", {"cgroup.controllers": "cpu", "cpu.max": "max 100000"})
    assert usable_cores(v2, membership(tmp_path, "0::/")) == AFFINITY
    # A hybrid host (v1 controllers, an empty unified hierarchy elsewhere): no v2 files at the root.
    hybrid = cgroup_files(tmp_path / "hybrid", {"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"})
    assert usable_cores(hybrid, membership(tmp_path, "1:cpu:/\n0::/")) == AFFINITY
    # No cgroup file system at all (another kernel, a sandbox).
    assert usable_cores(tmp_path / "missing", tmp_path / "missing-cgroup") == AFFINITY


def test_a_path_outside_the_namespace_reads_the_mount_root_only(tmp_path: Path) -> None:
    # The kernel names a cgroup outside the reader's cgroup namespace with "..": never read above the mount.
    root = cgroup_files(tmp_path / "cg", {"cgroup.controllers": "cpu", "cpu.max": "200000 100000"})
    (tmp_path / "cpu.max").write_text("50000 100000\n")  # what /sys/fs/cgroup/.. would hold, if read
    assert cgroup_cpu_quota(root, membership(tmp_path, "0::/../..")) == pytest.approx(2.0)


@pytest.mark.parametrize("proc_text, cpu_max", [("0::/\n\n", "garbage"), ("not a cgroup line\n0::/", "100000 0x10")])
def test_unexpected_text_means_no_quota_never_a_failed_start(tmp_path: Path, proc_text: str, cpu_max: str) -> None:
    root = cgroup_files(tmp_path / "cg", {"cgroup.controllers": "cpu", "cpu.max": cpu_max})
    assert cgroup_cpu_quota(root, membership(tmp_path, proc_text)) is None
    assert usable_cores(root, membership(tmp_path, proc_text)) == AFFINITY


@pytest.mark.skipif(AFFINITY < 2, reason="a quota below the affinity needs at least two CPUs")
def test_a_quota_below_the_affinity_caps_the_processes(tmp_path: Path) -> None:
    root = cgroup_files(tmp_path / "cg", {"cgroup.controllers": "cpu", "cpu.max": "100000 100000"})
    assert usable_cores(root, membership(tmp_path, "0::/")) == 1 < AFFINITY
