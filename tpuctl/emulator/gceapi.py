"""The other Google APIs a TPU VM user meets, on the emulator's one endpoint:
- OS Login (`oslogin.googleapis.com/v1/...` -> `ENDPOINT/v1/...`): login profile, import,
  get and delete a key, as the signed-in account (the `account` setting);
- Compute (`compute.googleapis.com/compute/v1/...` -> `ENDPOINT/compute/v1/...`): a project
  and its common instance metadata (read-only; set through the admin call below);
- admin: `POST /emulator/v1/projects/P/metadata` merges project metadata (`null` removes).
Every change of a profile or of project metadata reaches the nodes' guest agents."""

from __future__ import annotations

import urllib.parse
from typing import Any

from tpuctl.emulator.calls import Call, Reply

_SEG = r"[^/:]+"
_USER = rf"v1/users/(?P<user>{_SEG})"


def _user(call: Call) -> str:
    return urllib.parse.unquote(call.group("user"))


def _project_id(call: Call) -> str | None:
    return call.query.get("projectId") or None


# PosixAccount.operatingSystemType as proto numbers, for clients that ask for them
_OS_TYPES = {"OPERATING_SYSTEM_TYPE_UNSPECIFIED": 0, "LINUX": 1, "WINDOWS": 2}


def _profile(call: Call, profile: dict[str, Any]) -> dict[str, Any]:
    """A LoginProfile with enums as the client asked (`$alt=json;enum-encoding=int`)."""
    alt = call.query.get("$alt", "") + ";" + call.query.get("alt", "")
    if "enum-encoding=int" in alt:
        for account in profile.get("posixAccounts", []):
            account["operatingSystemType"] = _OS_TYPES[account["operatingSystemType"]]
    return profile


async def get_login_profile(call: Call) -> Reply:
    return Reply("", _profile(call, call.state.oslogin.profile(_user(call), _project_id(call))))


async def import_ssh_public_key(call: Call) -> Reply:
    result = call.state.oslogin.import_key(_user(call), await call.body(), _project_id(call))
    call.state.refresh_logins()
    _profile(call, result["loginProfile"])
    return Reply("", result)


async def get_ssh_public_key(call: Call) -> Reply:
    return Reply("", call.state.oslogin.get_key(_user(call), call.group("fp")))


async def delete_ssh_public_key(call: Call) -> Reply:
    call.state.oslogin.delete_key(_user(call), call.group("fp"))
    call.state.refresh_logins()
    return Reply("", {})


async def get_project(call: Call) -> Reply:
    project = call.group("project")
    self_link = f"{call.request.url.origin()}/compute/v1/projects/{project}"
    return Reply("", call.state.projects.resource(project, self_link))


async def admin_set_project_metadata(call: Call) -> Reply:
    """Merge the body's `KEY: VALUE` pairs into a project's metadata (`null` removes)."""
    items = call.state.projects.set_metadata(call.group("project"), await call.body())
    call.state.refresh_logins()
    return Reply("", {"project": call.group("project"), "metadata": items})


ROUTES = [
    ("GET", rf"/{_USER}/loginProfile", get_login_profile),
    ("POST", rf"/{_USER}:importSshPublicKey", import_ssh_public_key),
    ("GET", rf"/{_USER}/sshPublicKeys/(?P<fp>{_SEG})", get_ssh_public_key),
    ("DELETE", rf"/{_USER}/sshPublicKeys/(?P<fp>{_SEG})", delete_ssh_public_key),
    ("GET", rf"/compute/v1/projects/(?P<project>{_SEG})", get_project),
    ("POST", rf"/emulator/v1/projects/(?P<project>{_SEG})/metadata", admin_set_project_metadata),
]
