"""`create`'s rules on fake ports: reuse, spec mismatches, ownership, runtimes, stockouts,
zone fallback, nothing leaked."""

from __future__ import annotations

import pytest

from tests.fakes import FakeCloud, World, fake_ports
from tpuctl.errors import CapacityError, CloudError, PreemptedError, TimeoutExpired, UsageError
from tpuctl.ops.create import CreateEvents, CreateRequest, create


def req(name: str = "n1", **kw: object) -> CreateRequest:
    return CreateRequest(name=name, **{"accelerator_type": "v6e-16", **kw})  # type: ignore


def test_a_new_node_is_created_labelled_keyed_and_pinned():
    ports, cloud, _ = fake_ports()
    result = create(ports, req(labels=("team=ml",), spot=True))
    assert result.created and result.slice.state == "READY"
    sl = cloud.get_node("n1")
    assert sl.labels == {"team": "ml", "managed-by": "tpuctl", "tpuctl-task": "n1",
                         "tpuctl-owner": "alice"}
    assert sl.metadata["ssh-keys"] == "alice:ssh-ed25519 AAAAfake tpuctl"
    assert sl.spot and sl.runtime_version == "v2-alpha-tpuv6e"  # auto: the generation's
    assert cloud.changes() == ["create_node zone-a n1"]
    assert ports.local.pinned == ["n1"]  # type: ignore[attr-defined]


def test_the_same_spec_again_reuses_the_node_without_a_change():
    ports, cloud, _ = fake_ports()
    create(ports, req())
    again = create(ports, req())
    assert not again.created
    assert cloud.changes() == ["create_node zone-a n1"]


@pytest.mark.parametrize(("existing", "asked", "named"), [
    ({"accelerator": "v6e-8"}, {}, "type v6e-8 (asked v6e-16)"),
    ({"runtime": "v2-alpha-tpuv5"}, {"runtime": "v2-alpha-tpuv6e"},
     "runtime v2-alpha-tpuv5 (asked v2-alpha-tpuv6e)"),
    ({"spot": True}, {}, "spot=True (asked spot=False)"),
    ({"external_ips": False}, {}, "internal IPs only (asked external IPs)"),
    ({}, {"internal_ips": True}, "external IPs (asked --internal-ips)"),
])
def test_a_different_spec_is_refused_naming_the_difference(existing, asked, named):
    ports, cloud, _ = fake_ports()
    cloud.add_node("n1", **existing)
    with pytest.raises(UsageError, match="different spec") as e:
        create(ports, req(**asked))
    assert named in e.value.message and "delete" in (e.value.hint or "")
    assert cloud.changes() == []


def test_runtime_auto_reuses_whatever_runtime_the_node_has():
    ports, cloud, _ = fake_ports()
    cloud.add_node("n1", runtime="v2-alpha-tpuv6e-custom")
    assert not create(ports, req()).created


@pytest.mark.parametrize(("kw", "why"), [
    ({"managed": False}, "not managed by tpuctl"),
    ({"owner": "bob"}, "belongs to bob"),
])
def test_an_unmanaged_or_foreign_node_is_never_adopted(kw, why):
    ports, cloud, _ = fake_ports()
    cloud.add_node("n1", **kw)
    with pytest.raises(UsageError, match=why):
        create(ports, req())
    assert cloud.changes() == []


def test_a_node_without_an_owner_label_is_reused():
    ports, cloud, _ = fake_ports()
    cloud.add_node("n1", owner=None)
    assert not create(ports, req()).created


@pytest.mark.parametrize(("state", "error"), [("PREEMPTED", PreemptedError),
                                              ("TERMINATED", PreemptedError),
                                              ("STOPPED", CloudError)])
def test_an_existing_node_that_cannot_be_used_says_its_state(state, error):
    ports, cloud, _ = fake_ports()
    cloud.add_node("n1", state=state)
    with pytest.raises(error, match=state):
        create(ports, req())


def test_an_unknown_runtime_is_refused_with_the_zones_close_ones():
    ports, cloud, _ = fake_ports()
    with pytest.raises(UsageError, match="'v9' is not offered in zone zone-a") as e:
        create(ports, req(runtime="v9"))
    assert "v2-alpha-tpuv6e" in (e.value.hint or "")
    assert cloud.changes() == []


@pytest.mark.parametrize("bad", [{"name": "Bad_Name"}, {"accelerator_type": "v6e-17"},
                                 {"labels": ("k",)}, {"ttl": "soon"}, {"timeout": 0},
                                 {"zones": ("a", "")}, {"network": "Bad"},
                                 {"network": "projects/p/global/networks/-x"},
                                 {"subnetwork": "a b"}, {"tags": ("ok,Not-Ok",)},
                                 {"tags": (",".join(f"t{i}" for i in range(65)),)}])
def test_bad_input_costs_no_api_call(bad):
    ports, cloud, _ = fake_ports()
    with pytest.raises(UsageError):
        create(ports, req(**bad))
    assert cloud.calls == []


def test_external_ips_by_default_and_network_settings_pass_through():
    ports, cloud, _ = fake_ports()
    create(ports, req())
    assert cloud.world.specs["n1"].network.external_ips
    assert all(w.external_ip for w in cloud.get_node("n1").workers)
    create(ports, req("n2", internal_ips=True, network="projects/p/global/networks/vpc",
                      subnetwork="sub-1", tags=("a,b", "b", "c")))
    net = cloud.world.specs["n2"].network
    assert (net.external_ips, net.network, net.subnetwork, net.tags) == (
        False, "projects/p/global/networks/vpc", "sub-1", ("a", "b", "c"))


def test_bad_network_values_are_named():
    ports, _, _ = fake_ports()
    with pytest.raises(UsageError, match="invalid --tags value 'Not-Ok'"):
        create(ports, req(tags=("ok,Not-Ok",)))
    with pytest.raises(UsageError, match="invalid --network 'Bad'"):
        create(ports, req(network="Bad"))


def test_ttl_labels_an_expiry():
    ports, cloud, _ = fake_ports()
    create(ports, req(ttl="2h"))
    assert cloud.get_node("n1").labels["tpuctl-expires"].isdigit()


def test_a_stockout_is_a_capacity_error_and_leaves_nothing():
    ports, cloud, _ = fake_ports()
    cloud.world.stockout_zones.add("zone-a")
    with pytest.raises(CapacityError, match="no capacity for 'n1' in zone-a"):
        create(ports, req())
    assert cloud.list_nodes() == []


def test_a_create_that_never_gets_ready_is_deleted(monkeypatch):
    ports, cloud, _ = fake_ports()
    cloud.world.creating_polls = 10**6
    monkeypatch.setattr("time.sleep", lambda s: None)
    with pytest.raises(TimeoutExpired):
        create(ports, req(timeout=0.05))
    assert cloud.changes() == ["create_node zone-a n1", "delete_node zone-a n1"]


def test_queued_creates_go_through_a_queued_resource_and_report_its_state(monkeypatch):
    ports, cloud, _ = fake_ports()
    cloud.world.creating_polls = 1
    states: list[str] = []

    class Events(CreateEvents):
        def state(self, state: str) -> None:
            states.append(state)

    monkeypatch.setattr("time.sleep", lambda s: None)
    result = create(ports, req(queued=True), Events())
    assert result.slice.queued_resource.endswith("/queuedResources/n1")
    assert cloud.changes() == ["create_queued_resource zone-a n1"]
    assert states[:1] == ["REQUESTED"] and "READY" in states


def test_no_wait_returns_at_once():
    ports, cloud, _ = fake_ports()
    cloud.world.creating_polls = 5
    result = create(ports, req(wait=False))
    assert result.created and result.slice.state == "CREATING"


# -- zone fallback ------------------------------------------------------------------------------
class Tries(CreateEvents):
    def __init__(self) -> None:
        self.seen: list[str] = []

    def zone(self, zone: str) -> None:
        self.seen.append(f"try {zone}")

    def no_capacity(self, zone: str, message: str, next_zone: str) -> None:
        self.seen.append(f"{zone} full, next {next_zone}")


def test_zones_are_tried_in_order_moving_on_only_on_a_stockout():
    world = World(stockout_zones={"a", "b"})
    ports, cloud, _ = fake_ports(FakeCloud("a", world))
    events = Tries()
    result = create(ports, req(zones=("a", "b", "c")), events)
    assert result.slice.zone == "c"
    assert events.seen == ["try a", "a full, next b", "try b", "b full, next c", "try c"]
    assert [n.zone for n in world.nodes.values()] == ["c"]  # nothing left in a or b


def test_every_zone_out_of_capacity_names_them_all():
    world = World(stockout_zones={"a", "b"})
    ports, _, _ = fake_ports(FakeCloud("a", world))
    with pytest.raises(CapacityError, match=r"\(tried a, b\)"):
        create(ports, req(zones=("a", "b")))


def test_another_failure_does_not_move_to_the_next_zone():
    ports, cloud, _ = fake_ports(FakeCloud("a"))
    cloud.add_node("n1", owner="bob")
    events = Tries()
    with pytest.raises(UsageError, match="belongs to bob"):
        create(ports, req(zones=("a", "b")), events)
    assert events.seen == ["try a"]


def test_one_zone_given_is_used_instead_of_the_configured_one():
    ports, _, _ = fake_ports(FakeCloud("configured"))
    assert create(ports, req(zones=("elsewhere",))).slice.zone == "elsewhere"
