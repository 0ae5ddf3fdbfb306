"""Local validation of names and labels, so bad input never costs an API call."""

from __future__ import annotations

from tpuctl import lazyre
from tpuctl.errors import UsageError

_NODE_RE = lazyre.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_LABEL_KEY_RE = lazyre.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_VALUE_RE = lazyre.compile(r"^[a-z0-9_-]{0,63}$")
# environment variable names, as bash accepts them: recipes' env, --env, .env files
ENV_KEY_RE = lazyre.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def validate_node_name(name: str) -> str:
    """TPU node ids: lowercase letters, digits and hyphens, start with a letter, ≤ 63 chars."""
    if _NODE_RE.match(name):
        return name
    shown = name if len(name) <= 80 else name[:77] + "..."
    if not name:
        why = "it is empty"
    elif len(name) > 63:
        why = f"it has {len(name)} characters (at most 63)"
    elif not name[0].isalpha() or not name[0].islower():
        why = "it must start with a lowercase letter"
    elif name.endswith("-"):
        why = "it must not end with a hyphen"
    else:
        why = "only lowercase letters, digits and hyphens are allowed"
    import re

    suggestion = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63].rstrip("-")
    if suggestion and not suggestion[0].isalpha():
        suggestion = f"t-{suggestion}"[:63].rstrip("-")
    hint = f"try {suggestion!r}" if suggestion and _NODE_RE.match(suggestion) else (
        "use e.g. 'my-task'")
    raise UsageError(f"invalid node name {shown!r}: {why}", hint=hint)


def login_name() -> str:
    """The local login name, as `getpass.getuser` finds it (without importing getpass, which
    the fast path would pay for): $LOGNAME, $USER, $LNAME, $USERNAME, then the password
    database."""
    import os

    for var in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        user = os.environ.get(var)
        if user:
            return user
    import pwd

    return pwd.getpwuid(os.getuid())[0]


_USER_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_-"


def ssh_username() -> str:
    """The account name on workers: the local user, reduced to what GCP's guest agent accepts."""
    try:
        raw = login_name()
    except (KeyError, OSError):
        raw = "tpuctl"
    # [a-z0-9_-] kept, without `re` (the fast path calls this: docs/performance.md)
    name = "".join(c for c in raw.lower() if c in _USER_CHARS)[:32]
    return name if name and name[0].isalpha() else f"u{name}" if name else "tpuctl"


def owner_label(identity: str) -> str:
    """A GCP label value for who owns a node: the account (`alice.s@example.com` ->
    `alice_s_example_com`, as OS Login names accounts) or the local user; at most 63
    characters (longer ones end in a hash of the whole, so they stay distinct)."""
    import hashlib
    import re

    value = re.sub(r"[^a-z0-9_-]", "_", identity.strip().lower()) or "unknown"
    if len(value) > 63:
        value = value[:54] + "-" + hashlib.sha256(identity.encode()).hexdigest()[:8]
    return value


_DURATION_RE = lazyre.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """'90s', '30m', '8h', '2d' → seconds."""
    m = _DURATION_RE.match(text.strip())
    if not m or float(m.group(1)) <= 0:
        raise UsageError(f"invalid duration {text!r}", hint="use e.g. 30m, 8h or 2d")
    return float(m.group(1)) * _UNIT[m.group(2)]


def parse_labels(items: list[str]) -> dict[str, str]:
    """`k=v` pairs as GCP accepts them; tpuctl's own label keys are reserved."""
    labels: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"invalid label {item!r}: expected KEY=VALUE",
                             hint="e.g. --label team=research")
        if not _LABEL_KEY_RE.match(key):
            raise UsageError(
                f"invalid label key {key!r}",
                hint="keys: lowercase letters, digits, '_' and '-', starting with a letter",
            )
        if not _LABEL_VALUE_RE.match(value):
            raise UsageError(f"invalid label value {value!r} for {key!r}",
                             hint="values: lowercase letters, digits, '_' and '-', ≤ 63 chars")
        if key in ("managed-by", "tpuctl-task", "tpuctl-expires", "tpuctl-owner"):
            raise UsageError(f"label {key!r} is reserved for tpuctl",
                             hint="choose another key")
        labels[key] = value
    return labels


# Compute Engine resource names (networks, subnetworks, network tags), and the forms the TPU
# API takes a network or subnetwork in: a name, a partial path or a full URL.
_COMPUTE_NAME = r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?"
_COMPUTE_NAME_RE = lazyre.compile(rf"^{_COMPUTE_NAME}$")
_URL = r"(?:https://(?:www|compute)\.googleapis\.com/compute/(?:v1|beta|alpha)/)?"
_PROJECT = r"[a-z0-9][a-z0-9.:-]{0,99}"
_NETWORK_RE = lazyre.compile(
    rf"^{_URL}(?:projects/{_PROJECT}/)?global/networks/{_COMPUTE_NAME}$")
_SUBNET_RE = lazyre.compile(
    rf"^{_URL}(?:projects/{_PROJECT}/)?regions/[a-z][-a-z0-9]{{0,62}}/subnetworks/"
    rf"{_COMPUTE_NAME}$")
MAX_TAGS = 64


def _shown(value: str) -> str:
    return repr(value if len(value) <= 80 else value[:77] + "...")


def validate_network(value: str, what: str = "--network") -> str:
    """A VPC network as the TPU API takes it: a Compute name (`default`),
    projects/P/global/networks/N or its https://www.googleapis.com/compute/v1/... URL."""
    if _COMPUTE_NAME_RE.match(value) or _NETWORK_RE.match(value):
        return value
    raise UsageError(f"invalid {what} {_shown(value)}: not a network name",
                     hint="lowercase letters, digits and '-', starting with a letter (e.g. "
                     "default), or projects/PROJECT/global/networks/NAME")


def validate_subnetwork(value: str, what: str = "--subnetwork") -> str:
    """A subnetwork: a Compute name, projects/P/regions/R/subnetworks/S or its URL."""
    if _COMPUTE_NAME_RE.match(value) or _SUBNET_RE.match(value):
        return value
    raise UsageError(f"invalid {what} {_shown(value)}: not a subnetwork name",
                     hint="lowercase letters, digits and '-', starting with a letter, or "
                     "projects/PROJECT/regions/REGION/subnetworks/NAME")


def parse_tags(items: list[str] | tuple[str, ...], what: str = "--tags") -> tuple[str, ...]:
    """Network tags (`--tags a,b`, repeatable): Compute names, at most 64, duplicates once."""
    tags: list[str] = []
    for item in items:
        for tag in item.split(","):
            tag = tag.strip()
            if not _COMPUTE_NAME_RE.match(tag):
                raise UsageError(f"invalid {what} value {_shown(tag)}: not a network tag",
                                 hint="tags: lowercase letters, digits and '-', starting "
                                 "with a letter, at most 63 characters (e.g. tpu-ssh)")
            if tag not in tags:
                tags.append(tag)
    if len(tags) > MAX_TAGS:
        raise UsageError(f"too many {what}: {len(tags)} (at most {MAX_TAGS})",
                         hint="give fewer network tags")
    return tuple(tags)
