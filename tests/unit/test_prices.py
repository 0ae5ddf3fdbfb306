"""Price lookup: the shipped table, the user's overrides, unknown never guessed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tpuctl.errors import ConfigError
from tpuctl.prices import parse_table, price_for, region_of, shipped, tables


def test_the_shipped_table_names_its_source_and_date() -> None:
    t = shipped()
    assert t.currency == "USD"
    assert "https://cloud.google.com/tpu/pricing" in t.source and "read 2026-11-30" in t.source


def test_a_slice_costs_its_chips_times_the_chip_hour() -> None:
    p = price_for("v6e-16", "us-east5-b", False, [shipped()])
    assert (p.chips, p.per_chip, p.region) == (16, 2.70, "us-east5")
    assert p.amount == pytest.approx(43.2)
    spot = price_for("v6e-16", "us-east5-b", True, [shipped()])
    assert spot.amount == pytest.approx(16 * 1.08) and spot.spot
    # v5p names count TensorCores: v5p-8 is 4 chips
    assert price_for("v5p-8", "us-central1-a", False, [shipped()]).amount == pytest.approx(16.8)
    assert price_for("v5litepod-8", "us-west4-a", False, [shipped()]).amount == pytest.approx(9.6)


def test_an_exact_type_beats_its_generation() -> None:
    # v2 single devices and pod slices are priced apart
    assert price_for("v2-8", "us-central1-b", False, [shipped()]).per_chip == 1.125
    assert price_for("v2-32", "us-central1-a", False, [shipped()]).per_chip == 1.5


def test_unknown_region_or_type_is_unknown_and_says_what_is_missing() -> None:
    p = price_for("v6e-16", "local-a", False, [shipped()])
    assert p.amount is None and p.currency == "USD"
    assert "v6e" in (p.unknown or "") and "local" in (p.unknown or "")
    assert p.to_dict()["amount"] is None and "unknown" in p.to_dict()
    bad = price_for("v9-8", "us-east5-b", False, [shipped()])
    assert bad.amount is None and "v9-8" in (bad.unknown or "")
    # a region the table has for on-demand but not spot stays unknown for spot
    user = parse_table({"prices": {"v4": {"us-east1": {"on_demand": 3.0}}}}, "f", "f")
    assert price_for("v4-8", "us-east1-d", True, [user]).amount is None


def test_region_of_a_zone() -> None:
    assert region_of("us-east5-b") == "us-east5"
    assert region_of("europe-west4-a") == "europe-west4"
    assert region_of("local-a") == "local"


def _write(home: Path, text: str, mode: int = 0o600) -> Path:
    path = home / ".config" / "tpuctl" / "prices.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    return tmp_path


def test_the_users_file_overrides_and_wildcards_a_region(home: Path) -> None:
    _write(home, "source: our negotiated rates\nprices:\n  v6e:\n    '*': {on_demand: 2.0}\n"
                 "  v6e-8:\n    us-east5: {on_demand: 1.5}\n")
    p = price_for("v6e-16", "local-a", False)
    assert p.amount == pytest.approx(32.0) and p.source == "our negotiated rates"
    assert price_for("v6e-8", "us-east5-b", False).amount == pytest.approx(12.0)
    # what the user's file lacks still comes from the shipped table
    shipped_spot = price_for("v6e-16", "us-east5-b", True)
    assert shipped_spot.amount == pytest.approx(17.28) and "tpuctl price table" in \
        shipped_spot.source


def test_a_file_in_another_currency_replaces_the_shipped_table(home: Path) -> None:
    _write(home, "currency: EUR\nprices:\n  v4:\n    us-central2: {on_demand: 3.0}\n")
    assert price_for("v4-8", "us-central2-b", False).currency == "EUR"
    assert price_for("v6e-16", "us-east5-b", False).amount is None  # no USD mixed in


def test_a_bad_override_names_the_file_and_the_key(home: Path) -> None:
    path = _write(home, "prices:\n  v6e:\n    us-east5: {on_demand: -1}\n")
    with pytest.raises(ConfigError) as e:
        price_for("v6e-16", "us-east5-b", False)
    assert str(path) in e.value.message and "on_demand" in e.value.message
    _write(home, "pricez: {}\n")
    with pytest.raises(ConfigError, match="pricez"):
        tables()


def test_a_group_writable_override_is_ignored(home: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    if os.getuid() == 0:
        pytest.skip("root owns everything")
    _write(home, "prices:\n  v6e:\n    us-east5: {on_demand: 0.01}\n", mode=0o664)
    assert price_for("v6e-16", "us-east5-b", False).per_chip == 2.70
    assert "ignoring" in capsys.readouterr().err


_yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=8), children, max_size=3), max_leaves=12)


@settings(max_examples=200, deadline=None)
@given(data=st.dictionaries(st.sampled_from(["prices", "currency", "source", "x"]),
                            _yaml_values, max_size=3))
def test_any_override_document_is_a_table_or_a_config_error(data: dict) -> None:
    try:
        table = parse_table(yaml.safe_load(yaml.safe_dump(data)), "f", "f")
    except ConfigError:
        return
    for rates in table.rates.values():
        for kinds in rates.values():
            assert all(isinstance(v, float) and v >= 0 for v in kinds.values())
