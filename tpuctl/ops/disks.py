"""Mount the data disks a recipe names (`node.data_disks[].mount`) on every worker: format
if empty, then mount (remote/disk.sh), so the job finds its data where the recipe says."""

from __future__ import annotations

from collections.abc import Sequence

from tpuctl.ops.session import SliceSession, raise_on_failure
from tpuctl.recipes.node import Mount


async def mount_disks(session: SliceSession, mounts: Sequence[Mount]) -> list[str]:
    """One disk at a time (each on every worker at once); the paths mounted."""
    done = []
    for m in mounts:
        results = await session.script("disk", str(m.disk), m.path, "ro" if m.read_only
                                       else "rw", capture=True, timeout=300)
        raise_on_failure(results, f"mounting data disk {m.disk} at {m.path}")
        done.append(m.path)
    return done
