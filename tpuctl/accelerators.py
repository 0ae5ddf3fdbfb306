"""What an accelerator type name means: generation, chips, hosts, default runtime.

Facts (FIELD_NOTES.md): v2-v4 and v5p names count TensorCores (2 per chip), v5e
(`v5litepod-N`) and v6e names count chips. Every multi-host generation has 4 chips per host;
single-host v5e/v6e machines (-1, -4, -8) put all their chips on one host. The number of
workers of a *real* node always comes from its network endpoints; these numbers are for
validation, planning and the emulator.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tpuctl.errors import UsageError


@dataclass(frozen=True)
class Generation:
    name: str  # "v6e"
    prefix: str  # name prefix in accelerator types: "v6e", "v5litepod"
    api_type: str  # AcceleratorConfig.Type enum name: "V6E"
    counts_cores: bool  # True when the suffix counts TensorCores (2 per chip)
    sizes: tuple[int, ...]  # valid suffixes
    single_host_max_chips: int  # largest chip count that still fits on one host
    hbm_gib_per_chip: int
    default_runtime: str


GENERATIONS: dict[str, Generation] = {
    g.prefix: g
    for g in (
        Generation("v2", "v2", "V2", True, (8, 32, 128, 256, 512), 4, 16, "tpu-ubuntu2204-base"),
        Generation(
            "v3", "v3", "V3", True, (8, 32, 64, 128, 256, 512, 1024, 2048), 4, 32,
            "tpu-ubuntu2204-base",
        ),
        Generation(
            "v4", "v4", "V4", True,
            (8, 16, 32, 64, 128, 256, 384, 512, 1024, 1536, 2048, 3072, 4096), 4, 32,
            "tpu-ubuntu2204-base",
        ),
        Generation(
            "v5p", "v5p", "V5P", True,
            (8, 16, 32, 64, 128, 256, 384, 512, 1024, 1536, 2048, 3072, 4096, 6144, 8192, 12288),
            4, 95, "v2-alpha-tpuv5",
        ),
        Generation(
            "v5e", "v5litepod", "V5LITE_POD", False, (1, 4, 8, 16, 32, 64, 128, 256), 8, 16,
            "v2-alpha-tpuv5-lite",
        ),
        Generation(
            "v6e", "v6e", "V6E", False, (1, 4, 8, 16, 32, 64, 128, 256), 8, 32,
            "v2-alpha-tpuv6e",
        ),
    )
}

CHIPS_PER_HOST_MULTIHOST = 4
_TYPE_RE = re.compile(r"^(v2|v3|v4|v5p|v5litepod|v6e)-(\d+)$")


@dataclass(frozen=True)
class AcceleratorType:
    """A parsed, validated accelerator type such as `v6e-16`."""

    name: str
    generation: Generation
    size: int

    @property
    def chips(self) -> int:
        return self.size // 2 if self.generation.counts_cores else self.size

    @property
    def hosts(self) -> int:
        if self.chips <= self.generation.single_host_max_chips and self.size <= 8:
            return 1
        return max(1, self.chips // CHIPS_PER_HOST_MULTIHOST)

    @property
    def chips_per_host(self) -> int:
        return self.chips // self.hosts

    @property
    def default_runtime(self) -> str:
        return self.generation.default_runtime

    @property
    def topology(self) -> str:
        """A plausible topology string for listings (2D for v2/v3/v5e/v6e, 3D for v4/v5p)."""
        chips = self.chips
        if self.generation.prefix in ("v4", "v5p"):
            dims = [1, 1, 1]
            i = 0
            while chips > 1:
                dims[i % 3] *= 2
                chips //= 2
                i += 1
            return "x".join(str(d) for d in sorted(dims))
        a = 1
        while a * a < chips:
            a *= 2
        b = max(1, chips // a)
        return f"{min(a, b)}x{max(a, b)}"


def parse_accelerator(name: str) -> AcceleratorType:
    """Parse and validate locally, so a typo never costs an API call."""
    m = _TYPE_RE.match(name.strip())
    if not m:
        raise UsageError(
            f"unknown accelerator type {name!r}",
            hint="use a name like v6e-16, v5litepod-8, v5p-8 or v4-32 (see `tpuctl accelerators`)",
        )
    gen = GENERATIONS[m.group(1)]
    size = int(m.group(2))
    if size not in gen.sizes:
        sizes = ", ".join(f"{gen.prefix}-{s}" for s in gen.sizes)
        raise UsageError(
            f"unknown accelerator type {name!r}: {gen.name} comes in {sizes}",
            hint="pick one of the listed sizes",
        )
    return AcceleratorType(name=name.strip(), generation=gen, size=size)


def all_accelerator_types() -> list[AcceleratorType]:
    return [
        AcceleratorType(f"{g.prefix}-{s}", g, s) for g in GENERATIONS.values() for s in g.sizes
    ]
