import pytest

from tpuctl.accelerators import all_accelerator_types, parse_accelerator
from tpuctl.errors import ExitCode, UsageError


@pytest.mark.parametrize(
    "name,chips,hosts,per_host,runtime",
    [
        ("v6e-8", 8, 1, 8, "v2-alpha-tpuv6e"),
        ("v6e-16", 16, 4, 4, "v2-alpha-tpuv6e"),
        ("v6e-256", 256, 64, 4, "v2-alpha-tpuv6e"),
        ("v4-8", 4, 1, 4, "tpu-ubuntu2204-base"),
        ("v4-32", 16, 4, 4, "tpu-ubuntu2204-base"),
        ("v4-2048", 1024, 256, 4, "tpu-ubuntu2204-base"),
        ("v5p-8", 4, 1, 4, "v2-alpha-tpuv5"),
        ("v5litepod-16", 16, 4, 4, "v2-alpha-tpuv5-lite"),
        ("v5litepod-8", 8, 1, 8, "v2-alpha-tpuv5-lite"),
        ("v5litepod-1", 1, 1, 1, "v2-alpha-tpuv5-lite"),
        ("v2-32", 16, 4, 4, "tpu-ubuntu2204-base"),
    ],
)
def test_field_note_host_counts(name, chips, hosts, per_host, runtime):
    a = parse_accelerator(name)
    assert (a.chips, a.hosts, a.chips_per_host, a.default_runtime) == (
        chips, hosts, per_host, runtime)


@pytest.mark.parametrize("bad", ["v6e-3", "v7-8", "V6E-16", "v6e16", "", "tpu", "v6e-16 x"])
def test_unknown_types_are_usage_errors_naming_the_value(bad):
    with pytest.raises(UsageError) as e:
        parse_accelerator(bad)
    assert e.value.exit_code == ExitCode.USAGE
    assert repr(bad.strip()) in e.value.message or repr(bad) in e.value.message
    assert e.value.hint


def test_every_listed_type_parses_back():
    for a in all_accelerator_types():
        assert parse_accelerator(a.name) == a
        assert a.chips == a.hosts * a.chips_per_host
