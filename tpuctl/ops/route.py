"""How this machine reaches a node's workers over SSH: which address, which login, which way
in. `ssh_targets` is the one place that decides it, for every SSH path (asyncssh in process,
the connection daemon, the OpenSSH argv of `tpuctl ssh`, `ssh-config`).

- Directly: a worker's external IP when it has one (as gcloud); its internal IP only when the
  user says this machine is inside the VPC (`--internal-ip`, `ssh.internal_ip: true`). A
  worker without an external IP and no way in is refused before any connection: an internal
  address does not answer from outside (GCP drops the SYN), so trying would only hang.
- Through a way in, to the worker's internal IP: a jump host (`--ssh-proxy-jump
  USER@HOST[:PORT]`, reached as the user's own ssh reaches it), a proxy command
  (`--ssh-proxy-command`, a template whose placeholders tpuctl fills per worker), or IAP
  (`--tunnel-through-iap`: gcloud's `start-iap-tunnel` as the proxy command, addressing the
  worker by its instance name as gcloud does).

What runs on workers (JAX's coordinator, sglang-jax's ranks) always uses internal addresses;
that is not decided here.
"""

from __future__ import annotations

import re
import shlex
import shutil
from collections.abc import Sequence
from dataclasses import dataclass

from tpuctl.errors import CloudError, ConfigError, UsageError
from tpuctl.model import Slice, Worker
from tpuctl.workers.base import SshTarget

# {name} placeholders of a proxy command, filled per worker; `{{` and `}}` are literal braces
PLACEHOLDERS = ("host", "port", "node", "worker", "zone", "project", "instance")
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_JUMP = re.compile(r"^(?:(?P<user>[A-Za-z_][A-Za-z0-9_.-]{0,31})@)?"
                   r"(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}[A-Za-z0-9])?|\[[0-9a-fA-F:.]+\])"
                   r"(?::(?P<port>\d{1,5}))?$")
WAYS_IN = ("run tpuctl inside the VPC with --internal-ip (or `ssh: {internal_ip: true}` in "
           "tpuctl.yaml), go through a jump host with --ssh-proxy-jump USER@HOST[:PORT], or "
           "through IAP with --tunnel-through-iap")


@dataclass(frozen=True)
class RouteFlags:
    """A command's flags for reaching workers, before tpuctl.yaml fills what they leave."""

    internal_ip: bool = False  # --internal-ip
    proxy_jump: str | None = None  # --ssh-proxy-jump
    proxy_command: str | None = None  # --ssh-proxy-command
    iap: bool = False  # --tunnel-through-iap


@dataclass(frozen=True)
class SshRoute:
    """The way in, as flags and tpuctl.yaml's `ssh:` block set it (flags win)."""

    internal_ip: bool = False  # this machine is inside the VPC: internal addresses answer
    proxy_jump: str | None = None  # USER@HOST[:PORT], checked by parse_jump
    proxy_command: str | None = None  # a template with PLACEHOLDERS
    iap: bool = False  # through IAP: gcloud compute start-iap-tunnel
    gcloud: str | None = None  # gcloud's path, found when iap is on
    source: str = "default"  # where the way in came from (`tpuctl config`)

    @property
    def tunnelled(self) -> bool:
        return bool(self.proxy_jump or self.proxy_command or self.iap)

    def describe(self) -> str:
        if self.iap:
            return "IAP (gcloud compute start-iap-tunnel), internal IPs"
        if self.proxy_jump:
            return f"jump host {self.proxy_jump}, internal IPs"
        if self.proxy_command:
            return f"proxy command {self.proxy_command!r}, internal IPs"
        if self.internal_ip:
            return "direct, internal IPs (inside the VPC)"
        return "direct, external IPs (internal IPs only inside the VPC)"


def parse_jump(text: str) -> str:
    """`USER@HOST[:PORT]` (user optional, as OpenSSH's -J), back in that form."""
    m = _JUMP.match(text)
    port = m.group("port") if m else None
    if m is None or (port is not None and not 0 < int(port) < 65536):
        raise UsageError(f"invalid --ssh-proxy-jump {text[:80]!r}",
                         hint="give USER@HOST[:PORT], e.g. alice@bastion.example.com:22")
    return text


def check_template(template: str) -> tuple[str, ...]:
    """A proxy command template as argv words (shlex rules: not run by a shell), with only
    known placeholders; UsageError naming the first problem."""
    if not template.strip() or not template.isprintable():
        raise UsageError(f"invalid --ssh-proxy-command {template[:80]!r}: empty or holds "
                         "control characters", hint="e.g. 'ssh -W {host}:{port} bastion'")
    try:
        words = tuple(shlex.split(template))
    except ValueError as e:
        raise UsageError(f"invalid --ssh-proxy-command {template[:80]!r}: {e}",
                         hint="quote as a shell would; the words are not run by a shell") \
            from None
    for word in words:
        for m in _PLACEHOLDER.finditer(word):
            if m.group(0) in ("{{", "}}"):
                continue
            if m.group(1) not in PLACEHOLDERS:
                raise UsageError(
                    f"invalid --ssh-proxy-command: unknown placeholder {m.group(0)!r}",
                    hint=f"known: {', '.join('{' + p + '}' for p in PLACEHOLDERS)}; write "
                    "{{ and }} for literal braces")
    return words


def fill(words: Sequence[str], values: dict[str, str]) -> tuple[str, ...]:
    """The template's words with each placeholder replaced by its (validated) value: each
    stays inside its own argv word, so no value can add an argument or a shell construct."""
    def one(m: re.Match[str]) -> str:
        if m.group(0) == "{{":
            return "{"
        if m.group(0) == "}}":
            return "}"
        return values[m.group(1)]

    return tuple(_PLACEHOLDER.sub(one, w) for w in words)


def _plain(what: str, value: str) -> str:
    """A value that goes into a proxy command's word: never an option, nothing a shell or
    ssh_config would read as more than one word."""
    if not value or value.startswith("-") or not value.isprintable() or any(
            c.isspace() or c in "'\"\\%" for c in value):
        raise CloudError(f"refusing {value[:60]!r} as the {what} of a proxy command",
                         hint="check that the endpoint is the TPU API")
    return value


def resolve_route(*, internal_ip: bool | None = None, proxy_jump: str | None = None,
                  proxy_command: str | None = None, iap: bool | None = None,
                  file: dict[str, object] | None = None, file_source: str = "tpuctl.yaml"
                  ) -> SshRoute:
    """The way in: flags first, then tpuctl.yaml's `ssh:` block (`internal_ip`,
    `proxy_jump`, `proxy_command`, `tunnel_through_iap`). At most one way in."""
    from_flags = any(v for v in (internal_ip, proxy_jump, proxy_command, iap))
    source = "flags" if from_flags else (file_source if file else "default")
    if not from_flags and file:
        internal_ip = bool(file.get("internal_ip"))
        proxy_jump = _text(file.get("proxy_jump"))
        proxy_command = _text(file.get("proxy_command"))
        iap = bool(file.get("tunnel_through_iap"))
    ways = [n for n, v in (("--ssh-proxy-jump", proxy_jump),
                           ("--ssh-proxy-command", proxy_command),
                           ("--tunnel-through-iap", iap)) if v]
    if len(ways) > 1:
        raise UsageError(f"{' and '.join(ways)} cannot be combined (from {source})",
                         hint="choose one way in")
    if proxy_jump:
        parse_jump(proxy_jump)
    if proxy_command:
        check_template(proxy_command)
    gcloud = None
    if iap:
        gcloud = shutil.which("gcloud")
        if gcloud is None:
            raise UsageError("--tunnel-through-iap needs gcloud, which is not on PATH",
                             hint="install the Google Cloud CLI (it provides `gcloud compute "
                             "start-iap-tunnel`), or use --ssh-proxy-jump")
    return SshRoute(internal_ip=bool(internal_ip), proxy_jump=proxy_jump or None,
                    proxy_command=proxy_command or None, iap=bool(iap), gcloud=gcloud,
                    source=source)


def _text(value: object) -> str | None:
    return None if value in (None, "", False) else str(value)


def _iap_argv(route: SshRoute, sl: Slice, w: Worker) -> tuple[str, ...]:
    """What gcloud's `tpu-vm ssh --tunnel-through-iap` runs as OpenSSH's ProxyCommand (see
    docs/emulator.md#network-addresses-vpcs-and-the-ways-in)."""
    if not w.hostname:
        raise CloudError(f"worker {w.index} of {sl.name!r} publishes no instance name "
                         "(guest attribute `hostname`), which IAP needs",
                         hint="wait a minute after READY and retry; or use --ssh-proxy-jump")
    assert route.gcloud is not None
    return (route.gcloud, "compute", "start-iap-tunnel", w.hostname, str(w.ssh_port),
            "--listen-on-stdin", f"--project={sl.project}", f"--zone={sl.zone}",
            "--verbosity=warning")


def ssh_targets(sl: Slice, user: str, route: SshRoute,
                indices: Sequence[int] | None = None) -> list[SshTarget]:
    """THE choice of how to reach each chosen worker: address, login user and way in.
    Raises ConfigError (exit 2) before any connection when a worker has no address this
    machine can reach (no external IP, not inside the VPC, no way in)."""
    chosen = list(sl.workers) if indices is None else [sl.workers[i] for i in indices]
    if not route.tunnelled and not route.internal_ip:
        stranded = [w.index for w in chosen if not w.external_ip]
        if stranded:
            which = ", ".join(f"w{i}" for i in stranded)
            raise ConfigError(
                f"node {sl.name!r} has no external IP on {which} (created with "
                "--internal-ips): its internal addresses cannot be reached from outside its "
                "VPC", hint=WAYS_IN)
    words = check_template(route.proxy_command) if route.proxy_command else ()
    jump = parse_jump(route.proxy_jump) if route.proxy_jump else None
    out = []
    for w in chosen:
        # addresses, names and ports were checked where they entered (cloud/gcp.py)
        direct = not route.tunnelled and not route.internal_ip
        host = w.external_ip if direct and w.external_ip else w.ip
        proxy: tuple[str, ...] = ()
        if route.iap:
            proxy = _iap_argv(route, sl, w)
        elif words:
            values = {"host": host, "port": str(w.ssh_port), "node": sl.name,
                      "worker": str(w.index), "zone": sl.zone, "project": sl.project,
                      "instance": w.hostname or host}
            proxy = fill(words, {k: _plain(k, v) for k, v in values.items()})
        out.append(SshTarget(w.index, host, w.ssh_port, user, w.host_key, jump=jump,
                             proxy_command=proxy))
    return out
