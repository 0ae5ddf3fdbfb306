"""tpuctl quickstart: data-parallel training of a small MLP with JAX.

Usage: python recipes/programs/train.py recipes/programs/configs/quickstart.yaml

Every hyperparameter comes from the YAML file given as the only argument. The launcher's
environment says where the process sits in the slice:

  JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID   multi-process setup
  TPUCTL_RUN_DIR                                               where the checkpoint goes
  TPUCTL_INIT_TIMEOUT_SEC (optional, default 120)              bound on waiting for peers

The model learns to imitate a fixed random "teacher" network on synthetic inputs. Each process
generates its own slice of every global batch (deterministically, from the seed, the step and
its process id), the slices form one global array sharded over the "data" axis of a mesh of
all devices, and the parameters are replicated. Process 0 logs and writes the checkpoint.

Exit codes: 0 success, 2 bad usage or bad config.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import yaml

Params = list[dict[str, Any]]  # one {"w": array, "b": array} per layer

# A missing peer makes jax.distributed.initialize abort every process after this many seconds
# instead of waiting forever. Not a hyperparameter: it only bounds startup.
DEFAULT_INIT_TIMEOUT_SEC = 120


@dataclass(frozen=True)
class Config:
    seed: int
    steps: int
    global_batch_size: int
    learning_rate: float
    input_dim: int
    hidden_dim: int
    num_layers: int  # hidden layers of the student
    output_dim: int
    teacher_hidden_dim: int
    log_every: int


class ConfigError(Exception):
    pass


def load_config(path: str) -> Config:
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read config {path}: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"config {path} must be a YAML mapping")
    known = {f.name: f.type for f in fields(Config)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ConfigError(f"unknown config key(s) in {path}: {', '.join(map(str, unknown))}"
                          f" (known: {', '.join(known)})")
    missing = sorted(set(known) - set(raw))
    if missing:
        raise ConfigError(f"missing config key(s) in {path}: {', '.join(missing)}")
    values: dict[str, Any] = {}
    for name, typ in known.items():
        v = raw[name]
        if typ == "float" and isinstance(v, (int, float)) and not isinstance(v, bool):
            values[name] = float(v)
        elif typ == "int" and isinstance(v, int) and not isinstance(v, bool):
            values[name] = v
        else:
            raise ConfigError(f"config key {name!r} must be {typ}, got {v!r}")
    cfg = Config(**values)
    for name in ("steps", "global_batch_size", "input_dim", "hidden_dim", "output_dim",
                 "teacher_hidden_dim", "log_every"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"config key {name!r} must be >= 1")
    if cfg.num_layers < 0 or cfg.learning_rate <= 0:
        raise ConfigError("num_layers must be >= 0 and learning_rate > 0")
    return cfg


def log(msg: str) -> None:
    import jax

    if jax.process_index() == 0:
        print(msg, flush=True)


def init_distributed() -> bool:
    """Join the other processes of the slice, if there are any. Returns True if joined."""
    import jax

    num = int(os.environ.get("JAX_NUM_PROCESSES", "1"))
    if num <= 1:
        return False
    address = os.environ["JAX_COORDINATOR_ADDRESS"]
    process_id = int(os.environ["JAX_PROCESS_ID"])
    timeout = os.environ.get("TPUCTL_INIT_TIMEOUT_SEC", "")
    timeout_sec = int(timeout) if timeout.isdigit() else DEFAULT_INIT_TIMEOUT_SEC
    if process_id == 0:
        print(f"waiting for {num} processes at {address} (timeout {timeout_sec}s)", flush=True)
    if os.environ.get("JAX_PLATFORMS", "") == "cpu":
        # Cross-process collectives on CPU need gloo (the default in recent jax; explicit here).
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=address,
        num_processes=num,
        process_id=process_id,
        initialization_timeout=timeout_sec,
    )
    return True


def make_mesh(devices: list[Any]) -> tuple[Any, Any]:
    """A ("data",) mesh of every device; over a multislice group (MEGASCALE_NUM_SLICES > 1,
    set by tpuctl as on a multislice TPU VM) a ("slice", "data") mesh whose first axis
    crosses the data-centre network, the batch split over both (data-parallel across slices
    and within each)."""
    from jax.sharding import Mesh

    slices = int(os.environ.get("MEGASCALE_NUM_SLICES", "1") or 1)
    if slices > 1 and len(devices) % slices == 0:
        ordered = sorted(devices, key=lambda d: (d.process_index, d.id))
        mesh = Mesh(np.array(ordered).reshape(slices, -1), ("slice", "data"))
        log(f"mesh slice={slices} data={len(devices) // slices}")
        return mesh, ("slice", "data")
    return Mesh(np.array(devices), ("data",)), "data"


def init_mlp(key: Any, sizes: list[int]) -> Params:
    import jax
    import jax.numpy as jnp

    params: Params = []
    keys = jax.random.split(key, len(sizes) - 1)
    for k, n_in, n_out in zip(keys, sizes[:-1], sizes[1:], strict=True):
        w = jax.random.normal(k, (n_in, n_out), jnp.float32) * jnp.sqrt(1.0 / n_in)
        params.append({"w": w, "b": jnp.zeros((n_out,), jnp.float32)})
    return params


def mlp(params: Params, x: Any) -> Any:
    import jax.numpy as jnp

    for layer in params[:-1]:
        x = jnp.tanh(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


def local_batch(cfg: Config, teacher: Params, step: int, rows: int) -> tuple[Any, Any]:
    """This process's rows of the global batch for `step` (numpy, deterministic)."""
    import jax

    rng = np.random.default_rng([cfg.seed, step, jax.process_index()])
    x = rng.standard_normal((rows, cfg.input_dim), dtype=np.float32)
    h = np.tanh(x @ teacher[0]["w"])
    y = (h @ teacher[1]["w"]).astype(np.float32)
    return x, y


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: train.py CONFIG.yaml", file=sys.stderr)
        return 2
    try:
        cfg = load_config(argv[0])
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    import jax
    import jax.numpy as jnp
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    distributed = init_distributed()
    t_start = time.perf_counter()
    devices = jax.devices()
    log(f"processes={jax.process_count()} devices={len(devices)} "
        f"local_devices={jax.local_device_count()} backend={jax.default_backend()}")
    if cfg.global_batch_size % len(devices):
        print(f"error: global_batch_size={cfg.global_batch_size} must be a multiple of the "
              f"device count {len(devices)}", file=sys.stderr)
        if distributed:
            jax.distributed.shutdown()
        return 2
    log(f"config={argv[0]} " + " ".join(f"{k}={v}" for k, v in asdict(cfg).items()))

    mesh, batch_axes = make_mesh(devices)
    replicated = NamedSharding(mesh, P())
    batch_sharding = NamedSharding(mesh, P(batch_axes))
    local_rows = cfg.global_batch_size // jax.process_count()

    # The teacher (the function to learn) is the same numpy arrays on every process.
    t_rng = np.random.default_rng([cfg.seed, 1_000_003])
    teacher: Params = [
        {"w": t_rng.standard_normal((cfg.input_dim, cfg.teacher_hidden_dim))
         / np.sqrt(cfg.input_dim)},
        {"w": t_rng.standard_normal((cfg.teacher_hidden_dim, cfg.output_dim))
         / np.sqrt(cfg.teacher_hidden_dim)},
    ]

    sizes = [cfg.input_dim] + [cfg.hidden_dim] * cfg.num_layers + [cfg.output_dim]

    # Parameters and Adam state are created inside jit with a replicated output sharding, so
    # every process holds identical copies without any host-to-host transfer.
    def init_state() -> tuple[Params, Params, Params]:
        params = init_mlp(jax.random.key(cfg.seed), sizes)
        m = jax.tree_util.tree_map(jnp.zeros_like, params)  # Adam first moment
        v = jax.tree_util.tree_map(jnp.zeros_like, params)  # Adam second moment
        return params, m, v

    params, m, v = jax.jit(init_state, out_shardings=replicated)()

    b1, b2, eps = 0.9, 0.999, 1e-8

    def loss_fn(p: Params, x: Any, y: Any) -> Any:
        return jnp.mean((mlp(p, x) - y) ** 2)

    def train_step(p: Params, m: Params, v: Params, t: Any, x: Any, y: Any) -> tuple[Any, ...]:
        loss, g = jax.value_and_grad(loss_fn)(p, x, y)  # mean over the global batch
        m = jax.tree_util.tree_map(lambda a, b: b1 * a + (1 - b1) * b, m, g)
        v = jax.tree_util.tree_map(lambda a, b: b2 * a + (1 - b2) * b * b, v, g)
        lr_t = cfg.learning_rate * jnp.sqrt(1 - b2**t) / (1 - b1**t)
        p = jax.tree_util.tree_map(lambda w, a, b: w - lr_t * a / (jnp.sqrt(b) + eps), p, m, v)
        return p, m, v, loss

    step_fn = jax.jit(
        train_step,
        in_shardings=(replicated, replicated, replicated, None, batch_sharding, batch_sharding),
        out_shardings=(replicated, replicated, replicated, replicated),
        donate_argnums=(0, 1, 2),
    )

    loss_value = float("nan")
    t_last, step_last = time.perf_counter(), 0
    for step in range(1, cfg.steps + 1):
        x_local, y_local = local_batch(cfg, teacher, step, local_rows)
        x = jax.make_array_from_process_local_data(batch_sharding, x_local)
        y = jax.make_array_from_process_local_data(batch_sharding, y_local)
        params, m, v, loss = step_fn(params, m, v, jnp.float32(step), x, y)
        if step == 1 or step % cfg.log_every == 0 or step == cfg.steps:
            loss_value = float(loss)  # replicated scalar: readable on every process; syncs
            now = time.perf_counter()
            rate = (step - step_last) * cfg.global_batch_size / max(now - t_last, 1e-9)
            log(f"step={step} loss={loss_value:.4f} examples_per_sec={rate:.1f}")
            t_last, step_last = now, step

    elapsed = time.perf_counter() - t_start
    log(f"done steps={cfg.steps} final_loss={loss_value:.4f} elapsed_sec={elapsed:.1f}")

    if jax.process_index() == 0:
        run_dir = os.environ.get("TPUCTL_RUN_DIR")
        ckpt = (Path(run_dir).expanduser() if run_dir else Path.cwd()) / "checkpoint"
        ckpt.mkdir(parents=True, exist_ok=True)
        host_params = jax.device_get(params)  # replicated: the local copy is the whole value
        arrays: dict[str, Any] = {f"layer{i}_{k}": np.asarray(a)
                  for i, layer in enumerate(host_params) for k, a in layer.items()}
        np.savez(ckpt / "params.npz", **arrays)
        meta = {"step": cfg.steps, "final_loss": loss_value, "config": asdict(cfg),
                "processes": jax.process_count(), "devices": len(devices)}
        (ckpt / "checkpoint.json").write_text(json.dumps(meta, indent=2) + "\n")
        log(f"checkpoint written to {ckpt}")

    if distributed:
        jax.distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
