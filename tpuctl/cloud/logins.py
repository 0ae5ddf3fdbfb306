"""What decides how tpuctl logs in to a node, from Google APIs next to the TPU API: the
project's common instance metadata (Compute `projects.get`, where `enable-oslogin` may be
set for every VM), the signed-in account, and that account's OS Login profile (import
tpuctl's key, read the POSIX username).

OS Login goes through the official client, google-cloud-os-login (+5 ms of imports once
google-cloud-tpu is loaded, measured: docs/design.md); Compute's one GET goes through
google-auth's AuthorizedSession (already loaded by the TPU client's REST transport), because
google-cloud-compute costs 0.6 s and 69 MB for it. Both use the TPU client's credentials and,
on a custom endpoint (the emulator), that endpoint.
"""

from __future__ import annotations

import base64
import hashlib
import urllib.parse
from typing import Any

import google.auth.credentials
from google.api_core import exceptions as gexc

from tpuctl.cloud.retry import api_retry
from tpuctl.errors import ConfigError

COMPUTE = "https://compute.googleapis.com"
TIMEOUT_S = 30.0


def _session(creds: google.auth.credentials.Credentials) -> Any:
    from google.auth.transport.requests import AuthorizedSession

    return AuthorizedSession(creds)


def _get_json(creds: google.auth.credentials.Credentials, url: str) -> dict[str, Any]:
    """One GET, its failure as google-api-core's exception (which api_errors maps)."""
    response = _session(creds).get(url, timeout=TIMEOUT_S)
    if response.status_code >= 400:
        raise gexc.from_http_response(response)
    data = response.json()
    return data if isinstance(data, dict) else {}


def project_metadata(creds: google.auth.credentials.Credentials, endpoint: str | None,
                     project: str) -> dict[str, str]:
    """The project's common instance metadata, KEY -> VALUE."""
    url = f"{endpoint or COMPUTE}/compute/v1/projects/{urllib.parse.quote(project, safe='')}"
    data = api_retry(_get_json)(creds, url)
    items = (data.get("commonInstanceMetadata") or {}).get("items") or []
    return {str(i.get("key")): str(i.get("value", "")) for i in items
            if isinstance(i, dict) and i.get("key")}


def emulator_account(creds: google.auth.credentials.Credentials, endpoint: str) -> str:
    """The emulator's signed-in account (its `account` setting): what gcloud's config would
    say on GCP. Read from its admin API, with its token."""
    data = api_retry(_get_json)(creds, f"{endpoint}/emulator/v1/faults")
    account = (data.get("settings") or {}).get("account")
    if not isinstance(account, str) or "@" not in account:
        raise ConfigError(f"the endpoint {endpoint} names no signed-in account for OS Login",
                          hint="is it tpuctl's emulator? (`tpuctl emulator status`)")
    return account


def key_blob(public_key: str) -> str:
    """"type base64" of a public key line (its comment dropped): what identifies it."""
    parts = public_key.split()
    return " ".join(parts[:2])


def fingerprint(public_key: str) -> str:
    """OS Login's key id: the SHA-256 of the decoded key, in hex."""
    return hashlib.sha256(base64.b64decode(public_key.split()[1])).hexdigest()


def _client(creds: google.auth.credentials.Credentials, endpoint: str | None) -> Any:
    from google.cloud import oslogin_v1

    options = {"api_endpoint": endpoint} if endpoint else None
    return oslogin_v1.OsLoginServiceClient(transport="rest", credentials=creds,
                                           client_options=options)


def posix_username(profile: Any, project: str) -> str | None:
    """The login name OS Login VMs give the account: the POSIX account of this project, else
    the primary one (as gcloud picks it)."""
    accounts = list(profile.posix_accounts)
    for pick in (lambda a: a.account_id == project, lambda a: a.primary, lambda a: True):
        for account in accounts:
            if pick(account) and account.username:
                return str(account.username)
    return None


def oslogin_user(creds: google.auth.credentials.Credentials, endpoint: str | None,
                 project: str, account: str, public_key: str) -> tuple[str, bool]:
    """(POSIX username, imported now?): tpuctl's key imported into the account's OS Login
    profile unless it is there already (an import is a change the guest agents apply
    seconds later)."""
    client = _client(creds, endpoint)
    name = f"users/{account}"
    profile = api_retry(client.get_login_profile)(request={"name": name,
                                                           "project_id": project})
    mine = key_blob(public_key)
    imported = False
    if not any(key_blob(k.key) == mine for k in profile.ssh_public_keys.values()):
        from google.cloud.oslogin_v1 import common

        # an import of the same key is idempotent: safe to retry
        reply = api_retry(client.import_ssh_public_key)(
            parent=name, ssh_public_key=common.SshPublicKey(key=public_key),
            project_id=project)
        profile, imported = reply.login_profile, True
    user = posix_username(profile, project)
    if user is None:
        raise ConfigError(f"OS Login has no POSIX account for {account} in {project}",
                          hint="ask an administrator for roles/compute.osLogin on the "
                          "project")
    return user, imported
