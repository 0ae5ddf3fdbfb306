"""Hostile input to the emulator's new validators: fault and setting values, network configs,
tags, OS Login keys, project metadata. Each either accepts a value in its canonical form or
refuses it with its own typed error naming the field, never anything else; and the address
layout keeps internal and external halves apart."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tpuctl.emulator import addressing, netconfig
from tpuctl.emulator.errors import ApiError
from tpuctl.emulator.faults import KEYS, FaultError, validate
from tpuctl.emulator.guestagent import metadata_logins, oslogin_enabled
from tpuctl.emulator.oslogin import _check_key, posix_username
from tpuctl.emulator.workerfaults import skew_version

JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=10)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(KEYS), JSONISH)
def test_fault_values_are_canonical_or_refused_naming_the_key(key: str, value: Any) -> None:
    try:
        out = validate({key: value})
    except FaultError as e:
        assert key in str(e)
        return
    assert set(out) == {key}
    assert out == validate(out)  # canonical: validating again changes nothing


@settings(max_examples=300, deadline=None)
@given(JSONISH, st.sampled_from(["local-a", "us-central2-b"]))
def test_network_configs_are_checked_or_refused(value: Any, zone: str) -> None:
    try:
        got = netconfig.network_config(value, "proj", zone, "node.network_config")
    except ApiError as e:
        assert e.http_code == 400 and "network_config" in e.message
        return
    assert got["network"].startswith("projects/") and "/global/networks/" in got["network"]
    assert f"/regions/{zone.rsplit('-', 1)[0]}/subnetworks/" in got["subnetwork"]
    assert isinstance(got["enableExternalIps"], bool)


@pytest.mark.parametrize("value,expected", [
    ({}, ("projects/p/global/networks/default",
          "projects/p/regions/local/subnetworks/default")),
    ({"network": "https://www.googleapis.com/compute/v1/projects/host/global/networks/shared",
      "subnetwork": "projects/host/regions/local/subnetworks/tpus"},
     ("projects/host/global/networks/shared", "projects/host/regions/local/subnetworks/tpus")),
])
def test_network_names_in_any_form(value: dict[str, Any], expected: tuple[str, str]) -> None:
    got = netconfig.network_config(value, "p", "local-a", "node.network_config")
    assert (got["network"], got["subnetwork"]) == expected
    assert got["enableExternalIps"] is False  # the API's default


@pytest.mark.parametrize("value,field", [
    ({"subnetwork": "projects/p/regions/us-east1/subnetworks/x"}, "subnetwork"),
    ({"network": "Bad_Name"}, "network"),
    ({"enableExternalIps": "yes"}, "enable_external_ips"),
    ({"queueCount": -1}, "queue_count"),
    ({"nic": "x"}, "nic"),
])
def test_bad_network_configs_name_the_field(value: dict[str, Any], field: str) -> None:
    with pytest.raises(ApiError, match=field):
        netconfig.network_config(value, "p", "local-a", "node.network_config")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=70), max_size=70) | JSONISH)
def test_tags_are_compute_names_or_refused(value: Any) -> None:
    try:
        got = netconfig.tags(value)
    except ApiError as e:
        assert e.http_code == 400 and "tags" in e.message
        return
    assert len(got) <= 64 and all(t and t == t.lower() for t in got)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_oslogin_keys_are_real_public_keys_or_refused(text: str) -> None:
    try:
        _check_key(text)
    except ApiError as e:
        assert e.http_code == 400 and "SSH public key" in e.message


@settings(max_examples=200, deadline=None)
@given(st.emails())
def test_posix_usernames_are_safe_path_components(email: str) -> None:
    name = posix_username(email)
    assert 0 < len(name) <= 32 and all(c.isalnum() or c == "_" for c in name)
    assert name == name.lower() and "/" not in name


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["ssh-keys", "sshKeys", "enable-oslogin", "x"]),
                       st.text(max_size=80), max_size=3))
def test_metadata_never_breaks_the_guest_agent(md: dict[str, str]) -> None:
    for user, key, expires in metadata_logins(md):
        assert user and ":" not in user and key.split()[0].startswith(("ssh-", "ecdsa-", "sk-"))
        assert expires == 0
    assert isinstance(oslogin_enabled(md, {}), bool)


def test_oslogin_toggle_node_wins() -> None:
    assert oslogin_enabled({}, {"enable-oslogin": "TRUE"})
    assert not oslogin_enabled({"enable-oslogin": "FALSE"}, {"enable-oslogin": "TRUE"})
    assert oslogin_enabled({"enable-oslogin": "true"}, {})


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 254), st.integers(0, addressing.MAX_WORKERS - 1))
def test_internal_and_external_halves_never_meet(slot: int, index: int) -> None:
    internal, external = addressing.internal_ip(slot, index), addressing.external_ip(slot, index)
    assert internal != external
    assert addressing.split(internal) == (slot, index, False)
    assert addressing.split(external) == (slot, index, True)
    assert addressing.split(addressing.IAP_SOURCE) is None


def test_skewed_versions_differ() -> None:
    assert skew_version("0.4.35") == "0.4.34"
    assert skew_version("0.5.0") == "0.5.1"
    assert skew_version("0.0.2.dev20250101") != "0.0.2.dev20250101"
