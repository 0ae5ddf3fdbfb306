"""Time fabric's ThreadingGroup running `true` on every host (run by a Python that has fabric).

Not imported by tpuctl or by the other benchmarks: fanout.py runs it with the interpreter of
a separate venv (fabric is not a tpuctl dependency). Reads a JSON job on stdin:
  {"hosts": [[ip, port], ...], "user": U, "key": PATH, "known_hosts": PATH, "repeat": N,
   "command": "true"}
and prints {"seconds": [...], "cpu_seconds": [...], "fabric": VERSION, "paramiko": VERSION}
on stdout.
Host keys are pinned from tpuctl's known_hosts file (RejectPolicy for anything else), the
client key is tpuctl's, agent and default keys are off: the same trust as the OpenSSH runs.
"""

from __future__ import annotations

import json
import sys
import time


def main() -> int:
    import fabric
    import paramiko
    from fabric import Config, Connection, ThreadingGroup

    job = json.load(sys.stdin)
    config = Config(overrides={"load_ssh_configs": False})
    out, cpu = [], []
    for _ in range(int(job["repeat"])):
        t0, c0 = time.perf_counter(), time.process_time()
        conns = []
        for ip, port in job["hosts"]:
            c = Connection(ip, user=job["user"], port=int(port), config=config,
                           connect_timeout=20,
                           connect_kwargs={"key_filename": job["key"], "look_for_keys": False,
                                           "allow_agent": False})
            c.client.load_host_keys(job["known_hosts"])
            c.client.set_missing_host_key_policy(paramiko.RejectPolicy())
            conns.append(c)
        group = ThreadingGroup.from_connections(conns)
        try:
            results = group.run(job.get("command", "true"), hide=True, in_stream=False)
        finally:
            group.close()
        elapsed = time.perf_counter() - t0
        cpu.append(time.process_time() - c0)
        bad = [r for r in results.values() if r.exited != 0]
        if len(results) != len(conns) or bad:
            print(json.dumps({"error": f"{len(bad)} failed"}))
            return 1
        out.append(elapsed)
    print(json.dumps({"seconds": out, "cpu_seconds": cpu, "fabric": fabric.__version__,
                      "paramiko": paramiko.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
