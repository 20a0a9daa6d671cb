"""How many cores this process may use: its CPU affinity, capped by its cgroup's CPU quota.

``os.sched_getaffinity`` counts the CPUs the scheduler may run the process
on, which in a container limited by a CPU *quota* (``docker run --cpus 2``,
compose's ``cpus:``, a Kubernetes ``limits.cpu``) is every CPU of the host:
a replica that started one server process per affinity CPU on a 32-core host
with ``--cpus 2`` would run 32 processes (~400 MB each) on two cores' worth
of time.  The quota is read from the cgroup file system as the kernel
documents it:

* cgroup v2 (Documentation/admin-guide/cgroup-v2.rst, "CPU"): ``cpu.max``
  holds ``$MAX $PERIOD`` (µs), ``max`` for no limit;
* cgroup v1 (Documentation/scheduler/sched-bwc.rst): ``cpu.cfs_quota_us``
  (``-1`` for no limit) and ``cpu.cfs_period_us``.

The process's cgroup (``/proc/self/cgroup``) and each of its ancestors may
set a quota; the smallest one that is visible applies.  Inside a container
the cgroup path that ``/proc/self/cgroup`` names may not exist under the
mount (the mount's root *is* the container's cgroup), so missing
directories are skipped and the mount's root is always read; a quota set
above the container's own cgroup (a Kubernetes pod's, a
``--cgroup-parent`` slice's) is then not visible, and is not counted.  A
path outside the cgroup namespace (``/..``) reads the mount's root only.
A quota of ``q`` cores allows ``ceil(q)`` processes (as Go's
container-aware ``GOMAXPROCS`` rounds): 1.5 cores keep two processes busy
three quarters of the time.  Anything unreadable or unexpected counts as
no quota: the affinity is the answer, never a failed start-up.
"""

import math
import os
from pathlib import Path, PurePosixPath

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def usable_cores(cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> int:
    """The CPUs of this process's affinity, at most its cgroup CPU quota rounded up; at least 1."""
    affinity = len(os.sched_getaffinity(0))
    quota = cgroup_cpu_quota(cgroup_root, proc_cgroup)
    return max(1, affinity if quota is None else min(affinity, math.ceil(quota)))


def cgroup_cpu_quota(cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """The tightest CPU quota over this process's cgroup and its ancestors, in cores; ``None``: no quota
    (or no cgroup file system to read it from)."""
    try:
        memberships = proc_cgroup.read_text().splitlines()
        quotas: list[float] = []
        for line in memberships:
            fields = line.split(":", 2)
            if len(fields) != 3:
                continue  # not a membership line (a trailing blank line)
            hierarchy, controllers, path = fields
            if hierarchy == "0" and (cgroup_root / "cgroup.controllers").exists():  # v2, the unified hierarchy
                quotas += [quota for directory in _lineage(cgroup_root, path)
                           if (quota := _v2_quota(directory / "cpu.max")) is not None]
            elif "cpu" in controllers.split(","):  # v1: mounted as "cpu", "cpu,cpuacct" or "cpuacct,cpu"
                for mount in (cgroup_root / "cpu", cgroup_root / "cpu,cpuacct", cgroup_root / "cpuacct,cpu"):
                    quotas += [quota for directory in _lineage(mount, path)
                               if (quota := _v1_quota(directory)) is not None]
    except (OSError, ValueError):  # no cgroup file system here, a sandbox's EACCES, text not as documented
        return None
    return min(quotas, default=None)


def _lineage(mount: Path, path: str) -> list[Path]:
    """``mount/path`` and each of its ancestors up to ``mount``, those that exist; ``mount`` alone for a path
    outside the namespace (``/../..``), which pathlib would not resolve."""
    parts = tuple(part for part in PurePosixPath(path).parts if part != "/")
    if ".." in parts:
        parts = ()
    lineage = [mount.joinpath(*parts[:depth]) for depth in range(len(parts), -1, -1)]
    return [directory for directory in lineage if directory.is_dir()]


def _v2_quota(cpu_max: Path) -> float | None:
    fields = _read(cpu_max).split()
    if len(fields) != 2 or fields[0] == "max":
        return None
    return int(fields[0]) / int(fields[1])


def _v1_quota(directory: Path) -> float | None:
    quota, period = _read(directory / "cpu.cfs_quota_us"), _read(directory / "cpu.cfs_period_us")
    if not quota or not period or int(quota) <= 0:
        return None
    return int(quota) / int(period)


def _read(path: Path) -> str:
    """The file's text, stripped; empty where the file does not exist (no such controller at this level)."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return ""
