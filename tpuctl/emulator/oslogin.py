"""The OS Login API's model (oslogin.googleapis.com/v1): each account's login profile, its
POSIX account and the SSH public keys imported for it, saved with the emulator's state.

The caller is the emulator's signed-in account (the `account` setting): as on GCP, a
caller may read and change only its own profile (`users/{its email}`); anything else is 403.
The profile's shapes follow the discovery document `oslogin.v1.json`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from typing import Any

from tpuctl.emulator.errors import ApiError, invalid_argument
from tpuctl.emulator.faults import Faults
from tpuctl.emulator.guestagent import Login, key_of
from tpuctl.emulator.persistence import Store

MAX_USERNAME = 32
_KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
              "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com",
              "sk-ecdsa-sha2-nistp256@openssh.com")


def posix_username(email: str) -> str:
    """The POSIX username OS Login gives an account: its email, lowercase, every character
    outside [a-z0-9_] an underscore, at most 32 characters (alice@example.com ->
    alice_example_com)."""
    return re.sub(r"[^a-z0-9_]", "_", email.lower())[:MAX_USERNAME]


def _number(email: str, digits: int) -> str:
    """A stable number for an account (its id, its uid), as GCP's are fixed per account."""
    return str(int(hashlib.sha256(email.encode()).hexdigest(), 16) % 10**digits)


def fingerprint(key: str) -> str:
    """The SHA-256 fingerprint OS Login keys a public key by (hex of its decoded blob)."""
    blob = key.split()[1]
    return hashlib.sha256(base64.b64decode(blob)).hexdigest()


def _permission_denied() -> ApiError:
    return ApiError(403, "PERMISSION_DENIED", "The caller does not have permission")


def _check_key(text: Any) -> str:
    """A public key line as OS Login accepts it: a known type and a blob that decodes."""
    if not isinstance(text, str) or not text.strip():
        raise invalid_argument("Invalid SSH public key: key is required")
    ident = key_of(text)
    if ident is None or ident.split()[0] not in _KEY_TYPES:
        raise invalid_argument("Invalid SSH public key")
    kind, blob = ident.split()
    try:
        decoded = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        raise invalid_argument("Invalid SSH public key") from None
    if not decoded.startswith(len(kind).to_bytes(4, "big") + kind.encode()):
        raise invalid_argument("Invalid SSH public key")
    return text.strip()


class OsLogin:
    """Every account's OS Login profile; the signed-in account comes from the faults."""

    def __init__(self, store: Store, faults: Faults) -> None:
        self._store = store
        self._faults = faults

    @property
    def account(self) -> str:
        return self._faults.account

    def _caller(self, user: str) -> str:
        """`users/{user}`'s email, which must be the caller's own."""
        if user.lower() != self.account:
            raise _permission_denied()
        return self.account

    def logins(self) -> set[Login]:
        """Every imported key, under its account's POSIX username (what OS Login VMs accept)."""
        out: set[Login] = set()
        for email, keys in self._store.oslogin.items():
            for entry in keys.values():
                ident = key_of(entry["key"])
                if ident:
                    out.add((posix_username(email), ident,
                             int(entry.get("expirationTimeUsec") or 0)))
        return out

    def _key(self, email: str, fp: str, entry: dict[str, str]) -> dict[str, Any]:
        out: dict[str, Any] = {"key": entry["key"], "fingerprint": fp,
                               "name": f"users/{email}/sshPublicKeys/{fp}"}
        if entry.get("expirationTimeUsec"):
            out["expirationTimeUsec"] = entry["expirationTimeUsec"]
        return out

    def profile(self, user: str, project_id: str | None = None) -> dict[str, Any]:
        """GET users/{user}/loginProfile."""
        email = self._caller(user)
        username = posix_username(email)
        account: dict[str, Any] = {
            "primary": True,
            "username": username,
            "uid": _number(email, 9),
            "gid": _number(email, 9),
            "homeDirectory": f"/home/{username}",
            "operatingSystemType": "LINUX",
        }
        if project_id:
            account["accountId"] = project_id
            account["name"] = f"users/{email}/projects/{project_id}"
        profile: dict[str, Any] = {"name": _number(email, 21), "posixAccounts": [account]}
        keys = self._store.oslogin.get(email, {})
        if keys:
            profile["sshPublicKeys"] = {fp: self._key(email, fp, e) for fp, e in keys.items()}
        return profile

    def import_key(self, user: str, body: dict[str, Any],
                   project_id: str | None = None) -> dict[str, Any]:
        """POST users/{user}:importSshPublicKey: add (or re-import) a key."""
        email = self._caller(user)
        unknown = sorted(set(body) - {"key", "expirationTimeUsec", "fingerprint", "name"})
        if unknown:
            raise invalid_argument(
                f"Invalid JSON payload received. Unknown name \"{unknown[0]}\": "
                "Cannot find field."
            )
        key = _check_key(body.get("key"))
        entry = {"key": key}
        expires = body.get("expirationTimeUsec")
        if expires not in (None, "", 0, "0"):
            if isinstance(expires, bool) or not str(expires).isdigit():
                raise invalid_argument(
                    f"Invalid value at 'ssh_public_key.expiration_time_usec' (TYPE_INT64), "
                    f"{expires!r}"
                )
            entry["expirationTimeUsec"] = str(int(str(expires)))
        self._store.oslogin.setdefault(email, {})[fingerprint(key)] = entry
        self._store.save()
        return {"loginProfile": self.profile(user, project_id)}

    def get_key(self, user: str, fp: str) -> dict[str, Any]:
        email = self._caller(user)
        entry = self._store.oslogin.get(email, {}).get(fp)
        if entry is None:
            raise ApiError(404, "NOT_FOUND", "Requested entity was not found.")
        return self._key(email, fp, entry)

    def delete_key(self, user: str, fp: str) -> None:
        """DELETE users/{user}/sshPublicKeys/{fingerprint}."""
        email = self._caller(user)
        keys = self._store.oslogin.get(email, {})
        if fp not in keys:
            raise ApiError(404, "NOT_FOUND", "Requested entity was not found.")
        del keys[fp]
        if not keys:
            self._store.oslogin.pop(email, None)
        self._store.save()
