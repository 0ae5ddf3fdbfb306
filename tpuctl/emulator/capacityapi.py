"""Admin calls for the capacity a project owns (not part of the TPU API; faults never apply):
- reservations, `/emulator/v1/projects/P/locations/Z/reservations[/R]`: POST `{"reservationId",
  "acceleratorType", "count"}`, GET (list or one), DELETE (refused while nodes use it);
- disks, `/emulator/v1/projects/P/zones/Z/disks[/NAME]`: POST `{"name", "sizeGb"}`, GET,
  DELETE (refused while attached);
and Compute's read-only `disks.get`/`disks.list` at `ENDPOINT/compute/v1/projects/P/zones/Z/
disks[/NAME]`."""

from __future__ import annotations

from tpuctl.emulator.calls import Call, Reply

_SEG = r"[^/:]+"
_LOC = rf"projects/(?P<project>{_SEG})/locations/(?P<zone>{_SEG})"
_ZONE = rf"projects/(?P<project>{_SEG})/zones/(?P<zone>{_SEG})"


def _parent(call: Call) -> str:
    return f"projects/{call.group('project')}/locations/{call.group('zone')}"


def _base(call: Call) -> str:
    return str(call.request.url.origin())


async def create_reservation(call: Call) -> Reply:
    return Reply("", call.state.reservations.create(_parent(call), await call.body()))


async def list_reservations(call: Call) -> Reply:
    return Reply("", {"reservations": call.state.reservations.list_reservations(_parent(call))})


async def get_reservation(call: Call) -> Reply:
    return Reply("", call.state.reservations.get(f"{_parent(call)}/reservations/{call.group('r')}"))


async def delete_reservation(call: Call) -> Reply:
    call.state.reservations.delete(f"{_parent(call)}/reservations/{call.group('r')}")
    return Reply("", {})


async def create_disk(call: Call) -> Reply:
    disk = call.state.disks.create(call.group("project"), call.group("zone"), await call.body())
    return Reply("", call.state.disks.view(
        f"projects/{call.group('project')}/zones/{call.group('zone')}/disks/{disk['name']}",
        _base(call)))


async def list_disks_admin(call: Call) -> Reply:
    return Reply("", {"disks": call.state.disks.list_disks(call.group("project"),
                                                           call.group("zone"), _base(call))})


async def delete_disk(call: Call) -> Reply:
    call.state.disks.delete(call.group("project"), call.group("zone"), call.group("d"))
    return Reply("", {})


async def compute_list_disks(call: Call) -> Reply:
    project, zone = call.group("project"), call.group("zone")
    items = call.state.disks.list_disks(project, zone, _base(call))
    out = {"kind": "compute#diskList", "id": f"projects/{project}/zones/{zone}/disks",
           "selfLink": f"{_base(call)}/compute/v1/projects/{project}/zones/{zone}/disks"}
    return Reply("", {**out, "items": items} if items else out)


async def compute_get_disk(call: Call) -> Reply:
    return Reply("", call.state.disks.get(call.group("project"), call.group("zone"),
                                          call.group("d"), _base(call)))


ROUTES = [
    ("POST", rf"/emulator/v1/{_LOC}/reservations", create_reservation),
    ("GET", rf"/emulator/v1/{_LOC}/reservations", list_reservations),
    ("GET", rf"/emulator/v1/{_LOC}/reservations/(?P<r>{_SEG})", get_reservation),
    ("DELETE", rf"/emulator/v1/{_LOC}/reservations/(?P<r>{_SEG})", delete_reservation),
    ("POST", rf"/emulator/v1/{_ZONE}/disks", create_disk),
    ("GET", rf"/emulator/v1/{_ZONE}/disks", list_disks_admin),
    ("DELETE", rf"/emulator/v1/{_ZONE}/disks/(?P<d>{_SEG})", delete_disk),
    ("GET", rf"/compute/v1/{_ZONE}/disks", compute_list_disks),
    ("GET", rf"/compute/v1/{_ZONE}/disks/(?P<d>{_SEG})", compute_get_disk),
]
