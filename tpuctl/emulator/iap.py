"""A stand-in for `gcloud compute start-iap-tunnel`, for the emulator: what OpenSSH runs as
its ProxyCommand when gcloud (or tpuctl) tunnels SSH through Identity-Aware Proxy.

How real gcloud reaches a TPU VM worker through IAP (`gcloud compute tpus tpu-vm ssh NODE
--worker=I --tunnel-through-iap`): it reads the worker's GCE instance name from the node's
guest attributes (key `hostname`, e.g. `t1v-n-1a2b3c4d-w-0`) and runs
    ssh ... -o "ProxyCommand gcloud compute start-iap-tunnel INSTANCE %p --listen-on-stdin
        --project=PROJECT --zone=ZONE --verbosity=warning" -o ProxyUseFdpass=no USER@WORKER_IP
IAP then connects to port %p (22) of that instance's first network interface, from Google's
range 35.235.240.0/20 (which a firewall rule must allow), and relays stdin/stdout.

This stand-in takes the same arguments. It asks the emulator (TPUCTL_API_ENDPOINT, its token
as tpuctl finds it) which worker the instance name is, connects to the worker's internal
address from the emulated IAP range (addressing.IAP_SOURCE), so the worker's internal
listener lets it in as GCP's firewall lets IAP in, and relays stdin/stdout. Put it on PATH
as `gcloud`: `python -m tpuctl.emulator.iap install DIR` writes DIR/gcloud.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tpuctl.emulator.addressing import IAP_SOURCE

COMMAND = "gcloud.compute.start-iap-tunnel"
SCRIPT = """#!{python}
# tpuctl emulator: a stand-in for `gcloud compute start-iap-tunnel` (tpuctl/emulator/iap.py)
import sys
from tpuctl.emulator.iap import main
sys.exit(main())
"""


class GcloudError(Exception):
    """What gcloud prints as `ERROR: (gcloud.compute.start-iap-tunnel) ...` (exit 1)."""


def install(bin_dir: Path) -> Path:
    """Write `bin_dir/gcloud` (this interpreter runs it): put `bin_dir` first on PATH."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / "gcloud"
    path.write_text(SCRIPT.format(python=sys.executable))
    path.chmod(0o755)
    return path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gcloud compute start-iap-tunnel", add_help=False)
    p.add_argument("instance")
    p.add_argument("port")
    p.add_argument("--listen-on-stdin", action="store_true")
    p.add_argument("--local-host-port")
    p.add_argument("--project")
    p.add_argument("--zone")
    p.add_argument("--verbosity")
    p.add_argument("--quiet", "-q", action="store_true")
    p.add_argument("--iap-tunnel-disable-connection-check", action="store_true")
    return p


def _resolve(project: str, zone: str, instance: str) -> tuple[str, str]:
    """(internal address, node name) of the worker named `instance`, from the emulator."""
    from tpuctl.config import api_token

    endpoint = os.environ.get("TPUCTL_API_ENDPOINT", "").rstrip("/")
    if not endpoint:
        raise GcloudError("TPUCTL_API_ENDPOINT is not set: this stand-in serves the emulator")
    token = api_token(endpoint)[0]
    quoted = "/".join(urllib.parse.quote(x, safe="") for x in (project, zone, instance))
    req = urllib.request.Request(
        f"{endpoint}/emulator/v1/iap/{quoted}",
        headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # loopback
            found = json.loads(resp.read())
    except urllib.error.HTTPError as e:
        if e.code == 404:
            raise GcloudError("Error while connecting [4047: 'Failed to lookup instance'].") \
                from None
        if e.code in (401, 403):
            raise GcloudError("Error while connecting [4033: 'not authorized'].") from None
        raise GcloudError(f"Error while connecting [HTTP {e.code}].") from None
    except OSError as e:
        raise GcloudError(f"Error while connecting [{e}].") from None
    return str(found["internalIp"]), str(found["node"])


def _connect(ip: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((IAP_SOURCE, 0))
    sock.settimeout(20)
    try:
        sock.connect((ip, port))
    except OSError:
        sock.close()
        raise GcloudError("Error while connecting [4003: 'failed to connect to backend'].") \
            from None
    sock.settimeout(None)
    return sock


def _relay(sock: socket.socket) -> None:
    """stdin -> socket, socket -> stdout, until both directions have ended."""
    def upstream() -> None:
        try:
            while data := os.read(0, 65536):
                sock.sendall(data)
        except OSError:
            pass
        finally:
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    threading.Thread(target=upstream, daemon=True).start()
    try:
        while data := sock.recv(65536):
            view = memoryview(data)
            while view:
                view = view[os.write(1, view):]
    except OSError:
        pass
    sock.close()


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    while args and args[0] in ("alpha", "beta"):
        args.pop(0)
    if args[:2] != ["compute", "start-iap-tunnel"]:
        print("ERROR: (gcloud) this is tpuctl's emulator stand-in: only `gcloud compute "
              "start-iap-tunnel` is emulated", file=sys.stderr)
        return 2
    try:
        opts = _parser().parse_args(args[2:])
        project = opts.project or os.environ.get("CLOUDSDK_CORE_PROJECT")
        zone = opts.zone or os.environ.get("CLOUDSDK_COMPUTE_ZONE")
        if not project:
            raise GcloudError("The required property [project] is not currently set.")
        if not zone:
            raise GcloudError("The required property [zone] is not currently set.")
        if not opts.listen_on_stdin:
            raise GcloudError("this stand-in only tunnels --listen-on-stdin (a ProxyCommand)")
        if not opts.port.isdigit() or not 0 < int(opts.port) < 65536:
            raise GcloudError(f"Invalid value for [port]: {opts.port!r}")
        ip, _ = _resolve(project, zone, opts.instance)
        sock = _connect(ip, int(opts.port))
    except GcloudError as e:
        print(f"ERROR: ({COMMAND}) {e}", file=sys.stderr)
        return 1
    except SystemExit as e:  # argparse: usage
        return int(e.code or 2)
    _relay(sock)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["install"] and len(sys.argv) == 3:
        print(install(Path(sys.argv[2])))
        sys.exit(0)
    sys.exit(main())
