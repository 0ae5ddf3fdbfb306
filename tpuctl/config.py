"""Which cloud, project and zone a command talks to, and where each value came from.

Precedence, highest first (docs/commands.md#configuration):
  endpoint: --api-endpoint > $TPUCTL_API_ENDPOINT > tpuctl.yaml `api_endpoint`
            > the running local emulator (only when no GCP project is configured) > GCP
  project:  --project > $TPUCTL_PROJECT > $CLOUDSDK_CORE_PROJECT > tpuctl.yaml > gcloud config
            > "local-project" (emulator only)
  zone:     --zone > $TPUCTL_ZONE > $CLOUDSDK_COMPUTE_ZONE > tpuctl.yaml > gcloud config
            > "local-a" (emulator only)
"""

from __future__ import annotations

import os
import stat
import sys

from tpuctl import lazyre, wirejson
from tpuctl.errors import ConfigError
from tpuctl.paths import local_dir
from tpuctl.record import record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from typing import Any

    RepoReader = Callable[[Path], dict[str, str]]

EMULATOR_PROJECT = "local-project"
EMULATOR_ZONE = "local-a"
REPO_CONFIG = "tpuctl.yaml"
_REPO_KEYS = {"project", "zone", "api_endpoint", "persist_connections", "idle_warn",
              "worker_wait", "ssh"}
# tpuctl.yaml's `ssh:` block: how this machine reaches workers (ops/route.py)
SSH_KEYS = {"internal_ip": bool, "proxy_jump": str, "proxy_command": str,
            "tunnel_through_iap": bool}
DEFAULT_WORKER_WAIT_S = 60.0
# Seconds a background daemon keeps worker connections for the next command (workers/mux.py).
DEFAULT_PERSIST_S = 300.0


@record
class Setting:
    value: str | None
    source: str  # "--zone", "$TPUCTL_ZONE", "tpuctl.yaml (/path)", "gcloud config", ...


@record
class CloudConfig:
    endpoint: Setting  # value None means real GCP
    project: Setting
    zone: Setting
    # the tpuctl.yaml that was read (value None: none), for `tpuctl config`
    config_file: Setting = Setting(None, "none found")

    def to_dict(self) -> dict[str, dict[str, str | None]]:
        return {
            k: {"value": s.value, "source": s.source}
            for k, s in (("api_endpoint", self.endpoint), ("project", self.project),
                         ("zone", self.zone), ("config_file", self.config_file))
        }


def untrusted_reason(path: Path | str) -> str | None:
    """Why a tpuctl.yaml may not be trusted, or None. Like git's safe.directory: it must be
    a regular file owned by you (or root) that nobody else can write, or another user could
    point your API calls, and the secrets they carry, at a server of theirs."""
    me = os.getuid()
    try:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            if st.st_uid not in (me, 0):
                return f"a symbolic link owned by uid {st.st_uid}, not by you (uid {me})"
            st = os.stat(path)
    except OSError as e:
        return f"unreadable ({e.strerror})"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if st.st_uid not in (me, 0):
        return f"owned by uid {st.st_uid}, not by you (uid {me}) or root"
    if st.st_mode & 0o022:
        return (f"group- or world-writable (mode {stat.S_IMODE(st.st_mode):o}): "
                f"`chmod go-w {path}` if it is yours")
    return None


_WARNED: set[tuple[str, str]] = set()


def warn_untrusted(path: Path | str, why: str) -> None:
    """One line per file and process (config is resolved more than once per command)."""
    if (str(path), why) not in _WARNED:
        _WARNED.add((str(path), why))
        sys.stderr.write(f"warning: ignoring {path}: {why}\n")


def find_repo_config(start: Path | str | None = None) -> Path | None:
    """The nearest trusted tpuctl.yaml from the working directory up to the repository root
    (the first directory holding `.git`) or $HOME, whichever comes first. Untrusted ones
    (`untrusted_reason`) are skipped with a warning. (os.path, not pathlib: the fast path
    resolves its configuration with this too, and pathlib costs it ~3 ms.)"""
    here = os.path.realpath(start if start is not None else os.getcwd())
    home = os.path.realpath(os.path.expanduser("~"))
    d = here
    while True:
        candidate = os.path.join(d, REPO_CONFIG)
        if os.path.lexists(candidate):
            why = untrusted_reason(candidate)
            if why is None:
                from pathlib import Path

                return Path(candidate)
            warn_untrusted(candidate, why)
        parent = os.path.dirname(d)
        if d == home or os.path.exists(os.path.join(d, ".git")) or parent == d:
            return None
        d = parent


def load_repo_config(path: Path) -> dict[str, Any]:
    """A tpuctl.yaml's settings: strings, except `ssh`, a mapping of SSH_KEYS (ConfigError:
    not YAML, or an unknown key)."""
    import yaml  # only when a tpuctl.yaml exists: ~10 ms

    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e.__class__.__name__})",
                          hint="fix the file or remove it") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings",
                          hint=f"use keys {sorted(_REPO_KEYS)}")
    unknown = set(data) - _REPO_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown key {sorted(unknown)[0]!r}",
                          hint=f"allowed keys: {', '.join(sorted(_REPO_KEYS))}")
    out: dict[str, Any] = {k: str(v) for k, v in data.items() if v is not None and k != "ssh"}
    if data.get("ssh") is not None:
        out["ssh"] = _ssh_block(path, data["ssh"])
    return out


def _ssh_block(path: Path, block: object) -> dict[str, object]:
    if not isinstance(block, dict):
        raise ConfigError(f"{path}: `ssh` must be a mapping",
                          hint=f"keys: {', '.join(sorted(SSH_KEYS))}")
    for key, value in block.items():
        kind = SSH_KEYS.get(str(key))
        if kind is None:
            raise ConfigError(f"{path}: unknown key ssh.{key}",
                              hint=f"allowed: {', '.join(sorted(SSH_KEYS))}")
        if value is not None and not isinstance(value, kind):
            raise ConfigError(f"{path}: ssh.{key} must be a {kind.__name__}, got {value!r}",
                              hint="e.g. internal_ip: true, proxy_jump: alice@bastion:22")
    return {str(k): v for k, v in block.items() if v is not None}


def ssh_setting() -> tuple[dict[str, object], str]:
    """tpuctl.yaml's `ssh:` block and the file it came from ({} when there is none)."""
    repo_path = find_repo_config()
    if repo_path is None:
        return {}, "default"
    block = load_repo_config(repo_path).get("ssh") or {}
    return dict(block), f"{REPO_CONFIG} ({repo_path})"


def _env_or_repo(env: dict[str, str], var: str, key: str, reader: RepoReader
                 ) -> tuple[str | None, str]:
    """A setting's raw value and its source: $VAR, else the nearest trusted tpuctl.yaml's KEY
    (None when neither has it)."""
    if var in env:
        return env[var], f"${var}"
    repo_path = find_repo_config()
    raw = reader(repo_path).get(key) if repo_path else None
    return raw, f"{REPO_CONFIG} ({repo_path})"


def worker_wait_setting(env: dict[str, str] | None = None) -> tuple[float, str]:
    """How long a READY node's workers may take to register before tpuctl refuses the
    partial slice: $TPUCTL_WORKER_WAIT > tpuctl.yaml `worker_wait` > 60 s."""
    env = dict(os.environ) if env is None else env
    raw, source = _env_or_repo(env, "TPUCTL_WORKER_WAIT", "worker_wait", load_repo_config)
    if raw is None:
        return DEFAULT_WORKER_WAIT_S, "default"
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 3600:
        raise ConfigError(f"worker_wait {raw!r} (from {source}) is not a number of seconds",
                          hint="give 0 to 3600, e.g. 60")
    return value, source


class NotSimple(Exception):
    """`quick_repo_config` cannot be sure it reads the file as YAML would: use yaml."""


_QUICK_LINE = lazyre.compile(
    r"^(project|zone|api_endpoint|persist_connections):[ ]+([^ ]+)[ ]*$")
# values every YAML 1.1 reader (PyYAML's resolvers) takes as the same plain string: names
# starting with a letter, http(s) URLs, and decimal integers without a leading zero (which
# str(int) gives back unchanged); minus YAML's words for booleans and null
_QUICK_VALUE = lazyre.compile(
    r"^(?:[a-z][a-z0-9._:-]*|https?://[A-Za-z0-9._~:/-]+|0|[1-9][0-9]*)$")
_YAML_WORDS = {"yes", "no", "true", "false", "on", "off", "null", "y", "n"}


def quick_repo_config(path: Path | str) -> dict[str, str]:
    """`load_repo_config` without yaml, for the fast path: a file of `key: value` lines (and
    blank or comment lines) whose values are plain names, URLs or numbers reads to exactly
    what yaml would give (tests/unit/test_quick_config.py checks it against yaml, hypothesis);
    anything else raises NotSimple, and the full CLI reads it with yaml."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError):
        raise NotSimple(str(path)) from None
    out: dict[str, str] = {}
    for raw in text.split("\n"):
        line = raw[:-1] if raw.endswith("\r") else raw
        stripped = line.strip(" ")
        if not stripped or (stripped.startswith("#") and "\t" not in line):
            continue
        m = _QUICK_LINE.match(line)
        if not m or m.group(1) in out or not _QUICK_VALUE.match(m.group(2)) or \
                m.group(2) in _YAML_WORDS:
            raise NotSimple(str(path))
        out[m.group(1)] = m.group(2)
    return out


def gcloud_config() -> dict[str, str]:
    """project, zone and account from gcloud's active configuration, read as a file (no
    subprocess)."""
    base = os.environ.get("CLOUDSDK_CONFIG") or os.path.join(os.path.expanduser("~"),
                                                             ".config", "gcloud")
    active = "default"
    active_file = os.path.join(base, "active_config")
    if os.path.isfile(active_file):
        with open(active_file) as f:
            active = f.read().strip() or "default"
    cfg_file = os.path.join(base, "configurations", f"config_{active}")
    if not os.path.isfile(cfg_file):
        return {}
    import configparser

    parser = configparser.ConfigParser()
    try:
        parser.read(cfg_file)
    except configparser.Error:
        return {}
    out: dict[str, str] = {}
    if parser.has_option("core", "project"):
        out["project"] = parser.get("core", "project")
    if parser.has_option("core", "account"):
        out["account"] = parser.get("core", "account")
    if parser.has_option("compute", "zone"):
        out["zone"] = parser.get("compute", "zone")
    return out


def emulator_info(state_dir: Path | str) -> dict[str, Any] | None:
    """A background emulator's emulator.json (pid, endpoint, ssh_port), if its pid is alive."""
    try:
        with open(os.path.join(state_dir, "emulator.json")) as f:
            info = wirejson.loads(f.read())
        os.kill(int(info["pid"]), 0)
        return dict(info)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def running_emulator_endpoint() -> str | None:
    """The endpoint of a background emulator started by `tpuctl emulator start`, if alive."""
    info = emulator_info(local_dir("emulator"))
    return str(info["endpoint"]) if info and "endpoint" in info else None


TOKEN_FILE_ENV = "TPUCTL_API_TOKEN_FILE"


def api_token(endpoint: str | None) -> tuple[str | None, str]:
    """The bearer token for a custom endpoint (the emulator's) and where it came from.

    Looked up, never configured as a value: `$TPUCTL_API_TOKEN_FILE` (what `tpuctl emulator
    start|serve` prints), then the default emulator's state dir. A token is sent only to the
    endpoint named by the emulator.json beside it, so a token never reaches another server.
    The token itself is never printed; only its source.
    """
    if endpoint is None:
        return None, "Application Default Credentials"
    want = endpoint.rstrip("/")
    from pathlib import Path

    candidates = []
    if os.environ.get(TOKEN_FILE_ENV):
        candidates.append((Path(os.environ[TOKEN_FILE_ENV]), f"${TOKEN_FILE_ENV}"))
    candidates.append((Path(local_dir("emulator", "token")), "local emulator"))
    for path, source in candidates:
        info = emulator_info(path.parent)
        if info is None or str(info.get("endpoint", "")).rstrip("/") != want:
            continue
        try:
            token = path.read_text().strip()
        except OSError:
            continue
        if token:
            return token, f"{source} ({path})"
    return None, "none found (anonymous)"


def _first(*candidates: tuple[str | None, str]) -> Setting:
    for value, source in candidates:
        if value:
            return Setting(value, source)
    return Setting(None, "unset")


def resolve(
    *, api_endpoint: str | None = None, project: str | None = None, zone: str | None = None,
    reader: RepoReader = load_repo_config,
) -> CloudConfig:
    """`reader` reads a tpuctl.yaml (the fast path passes `quick_repo_config`). gcloud's file
    is read only when nothing before it in the precedence gives the project or the zone."""
    env = os.environ
    repo_path = find_repo_config()
    repo = reader(repo_path) if repo_path else {}
    repo_src = f"{REPO_CONFIG} ({repo_path})"
    gcloud: dict[str, str] = {}
    project_s = _first(
        (project, "--project"),
        (env.get("TPUCTL_PROJECT"), "$TPUCTL_PROJECT"),
        (env.get("CLOUDSDK_CORE_PROJECT"), "$CLOUDSDK_CORE_PROJECT"),
        (repo.get("project"), repo_src),
    )
    zone_s = _first(
        (zone, "--zone"),
        (env.get("TPUCTL_ZONE"), "$TPUCTL_ZONE"),
        (env.get("CLOUDSDK_COMPUTE_ZONE"), "$CLOUDSDK_COMPUTE_ZONE"),
        (repo.get("zone"), repo_src),
    )
    if project_s.value is None or zone_s.value is None:
        gcloud = gcloud_config()
        if project_s.value is None:
            project_s = _first((gcloud.get("project"), "gcloud config"))
        if zone_s.value is None:
            zone_s = _first((gcloud.get("zone"), "gcloud config"))
    endpoint_s = _first(
        (api_endpoint, "--api-endpoint"),
        (env.get("TPUCTL_API_ENDPOINT"), "$TPUCTL_API_ENDPOINT"),
        (repo.get("api_endpoint"), repo_src),
    )
    if endpoint_s.value is None and project_s.value is None:
        local = running_emulator_endpoint()
        if local:
            endpoint_s = Setting(local, "local emulator (tpuctl emulator start)")
    if endpoint_s.value is not None:
        # `http://host:port/` is the same server: the client appends `/v2/...` itself
        url = endpoint_s.value.rstrip("/")
        endpoint_s = Setting(url, endpoint_s.source)
        if not url.startswith(("http://", "https://")):
            raise ConfigError(
                f"API endpoint {url!r} (from {endpoint_s.source}) has no scheme",
                hint="write it as http://127.0.0.1:PORT or https://HOST",
            )
        if project_s.value is None:
            project_s = Setting(EMULATOR_PROJECT, "default for a custom endpoint")
        if zone_s.value is None:
            zone_s = Setting(EMULATOR_ZONE, "default for a custom endpoint")
    else:
        endpoint_s = Setting(None, "Google Cloud (tpu.googleapis.com)")
    file_s = Setting(str(repo_path) if repo_path else None,
                     "nearest trusted tpuctl.yaml up to the repository root or $HOME")
    return CloudConfig(endpoint=endpoint_s, project=project_s, zone=zone_s, config_file=file_s)


def require_project_zone(cfg: CloudConfig) -> tuple[str, str]:
    if not cfg.project.value:
        raise ConfigError(
            "no project configured",
            hint="pass --project, set $TPUCTL_PROJECT, or start the local emulator "
            "with `tpuctl emulator start`",
        )
    if not cfg.zone.value:
        raise ConfigError("no zone configured",
                          hint="pass --zone (e.g. us-east5-b) or set $TPUCTL_ZONE")
    return cfg.project.value, cfg.zone.value


def persist_setting(env: dict[str, str] | None = None, *,
                    reader: RepoReader = load_repo_config) -> tuple[float, str]:
    """How long idle worker connections are kept open for the next short command (0: never),
    and where that came from (`tpuctl config` shows both).

    $TPUCTL_PERSIST_CONNECTIONS > tpuctl.yaml `persist_connections` > 0 under CI (`CI` set
    true: no process outlives a pipeline step) > 300.
    """
    env = dict(os.environ) if env is None else env
    raw, source = _env_or_repo(env, "TPUCTL_PERSIST_CONNECTIONS", "persist_connections", reader)
    if raw is None:
        if env.get("CI", "").strip().lower() in ("1", "true", "yes"):
            return 0.0, "default under CI ($CI)"
        return DEFAULT_PERSIST_S, "default"
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 86400:
        raise ConfigError(f"persist_connections {raw!r} (from {source}) is not a number of "
                          "seconds", hint="give 0 (off) to 86400, e.g. 300")
    return value, source


def persist_seconds(env: dict[str, str] | None = None, *,
                    reader: RepoReader = load_repo_config) -> float:
    """`persist_setting`'s value alone."""
    return persist_setting(env, reader=reader)[0]


DEFAULT_IDLE_WARN_S = 1800.0  # `list` marks a node idle this long (no run on it)


def idle_warn_setting() -> tuple[float, str]:
    """How long a node may sit without a run before `list` marks it idle, and where that
    came from: tpuctl.yaml `idle_warn` (a duration: 30m, 2h) > 30 minutes."""
    repo_path = find_repo_config()
    raw = load_repo_config(repo_path).get("idle_warn") if repo_path else None
    if raw is None:
        return DEFAULT_IDLE_WARN_S, "default"
    from tpuctl.errors import UsageError
    from tpuctl.naming import parse_duration

    try:
        return parse_duration(raw), f"{REPO_CONFIG} ({repo_path})"
    except UsageError:
        raise ConfigError(f"idle_warn {raw!r} (from {repo_path}) is not a duration",
                          hint="give e.g. 30m, 2h or 1d") from None
