"""What a node costs an hour: the price table shipped in the package (tpuctl/prices.yaml, with
its source and the date it was read) and the user's overrides (~/.config/tpuctl/prices.yaml).

Prices are per chip-hour, by generation (`v6e`) or exact type (`v2-8`) and region (a zone
without its last part; `*` in an override matches every region). A type or region missing
from both tables is priced unknown (`amount` None), never guessed from a neighbour.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tpuctl.errors import ConfigError, UsageError

KINDS = ("on_demand", "spot")


@dataclass(frozen=True)
class PriceTable:
    currency: str
    source: str  # where the numbers come from, with the date they were read
    rates: dict[str, dict[str, dict[str, float]]]  # key -> region -> kind -> per chip-hour


@dataclass(frozen=True)
class Price:
    """A node's price per hour; `amount` None when unknown (`unknown` says why)."""

    amount: float | None
    currency: str
    source: str
    per_chip: float | None = None
    chips: int = 0
    region: str = ""
    spot: bool = False
    unknown: str | None = None

    def to_dict(self) -> dict[str, object]:
        d: dict[str, object] = {
            "amount": None if self.amount is None else round(self.amount, 4),
            "currency": self.currency, "source": self.source,
            "per_chip_hour": self.per_chip, "chips": self.chips, "region": self.region,
            "spot": self.spot}
        if self.unknown:
            d["unknown"] = self.unknown
        return d

    def text(self) -> str:
        """`$43.20/h` (or `unknown`), for tables."""
        return "unknown" if self.amount is None else money(self.amount, self.currency) + "/h"

    def for_hours(self, hours: float) -> float | None:
        return None if self.amount is None else self.amount * hours


def money(amount: float, currency: str = "USD") -> str:
    if currency == "USD":
        return f"${amount:,.2f}"
    return f"{amount:,.2f} {currency}"


def region_of(zone: str) -> str:
    """`us-east5-b` → `us-east5` (a zone is its region plus one letter)."""
    head, sep, _ = zone.rpartition("-")
    return head if sep else zone


def override_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "tpuctl" / "prices.yaml"


def _rates(data: Any, where: str) -> dict[str, dict[str, dict[str, float]]]:
    """The `prices:` mapping, checked: key -> region -> {on_demand, spot} of numbers ≥ 0."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: `prices` must map a generation or type to regions",
                          hint="e.g. prices: {v6e: {us-east5: {on_demand: 2.7, spot: 1.08}}}")
    out: dict[str, dict[str, dict[str, float]]] = {}
    for key, regions in data.items():
        if not isinstance(regions, dict):
            raise ConfigError(f"{where}: prices.{key} must map regions to prices",
                              hint="e.g. us-east5: {on_demand: 2.7, spot: 1.08}")
        for region, kinds in regions.items():
            if not isinstance(kinds, dict) or not kinds or set(kinds) - set(KINDS):
                raise ConfigError(f"{where}: prices.{key}.{region} must hold on_demand and/or "
                                  "spot", hint="e.g. {on_demand: 2.7, spot: 1.08}")
            for kind, value in kinds.items():
                if (isinstance(value, bool) or not isinstance(value, (int, float))
                        or not math.isfinite(value) or value < 0):
                    raise ConfigError(f"{where}: prices.{key}.{region}.{kind} is {value!r}, "
                                      "not a price", hint="give a number ≥ 0 per chip-hour")
                out.setdefault(str(key), {}).setdefault(str(region), {})[kind] = float(value)
    return out


def parse_table(data: Any, where: str, default_source: str) -> PriceTable:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping with `prices:`",
                          hint="see docs/commands.md#prices")
    unknown = set(data) - {"source", "read", "currency", "prices"}
    if unknown:
        raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r}",
                          hint="allowed keys: currency, prices, read, source")
    currency = str(data.get("currency") or "USD")
    source = str(data.get("source") or default_source)
    if data.get("read"):
        source += f", read {data['read']}"
    return PriceTable(currency, source, _rates(data.get("prices"), where))


def _load_yaml(path: Path) -> Any:
    import yaml

    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e.__class__.__name__})",
                          hint="fix the file or remove it") from None


@functools.cache
def shipped() -> PriceTable:
    from importlib import resources

    import yaml

    data = yaml.safe_load(resources.files("tpuctl").joinpath("prices.yaml").read_text())
    table = parse_table(data, "tpuctl/prices.yaml", "tpuctl price table")
    return PriceTable(table.currency, f"tpuctl price table ({table.source})", table.rates)


def tables(path: Path | None = None) -> list[PriceTable]:
    """The tables to look prices up in, first match wins: the user's file (when there is a
    trusted one), then the shipped table, unless the user's names another currency (then it
    replaces the shipped one: prices of two currencies never mix)."""
    from tpuctl.config import untrusted_reason, warn_untrusted

    path = override_path() if path is None else path
    if not (path.exists() or path.is_symlink()):
        return [shipped()]
    why = untrusted_reason(path)
    if why is not None:
        warn_untrusted(path, why)
        return [shipped()]
    user = parse_table(_load_yaml(path), str(path), str(path))
    if user.currency != shipped().currency:
        return [user]
    return [user, shipped()]


def price_for(accelerator_type: str, zone: str, spot: bool,
              within: list[PriceTable] | None = None) -> Price:
    """The node's hourly price, or an unknown one saying which entry is missing."""
    from tpuctl.accelerators import parse_accelerator

    within = tables() if within is None else within
    kind = "spot" if spot else "on_demand"
    region = region_of(zone)
    try:
        accel = parse_accelerator(accelerator_type)
    except UsageError:
        return Price(None, within[0].currency, within[0].source, region=region, spot=spot,
                     unknown=f"unknown accelerator type {accelerator_type!r}")
    for table in within:
        for key in (accel.name, accel.generation.name):
            by_region = table.rates.get(key, {})
            for r in (region, "*"):
                rate = by_region.get(r, {}).get(kind)
                if rate is not None:
                    return Price(rate * accel.chips, table.currency, table.source, rate,
                                 accel.chips, region, spot)
    label = "spot" if spot else "on-demand"
    return Price(None, within[0].currency, " + ".join(t.source for t in within), None,
                 accel.chips, region, spot,
                 unknown=f"the price table has no {label} price for {accel.generation.name} "
                 f"in {region}; add it to {override_path()}")
