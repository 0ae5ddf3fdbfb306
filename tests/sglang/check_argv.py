"""Runs INSIDE an sglang-jax venv (Python >= 3.12): would the real server accept each argv?

Reads a JSON list of argvs (the flags after `python -m sgl_jax.launch_server`) on stdin and
prints one JSON result per argv: the server's own argument parser (`ServerArgs.from_cli`, with
its `__post_init__`), its startup checks (`check_server_args`: tp % nnodes, ...) and the model
check its model runner makes before loading (`validate_tensor_parallel_config(tp // dp)`).
"""

import json
import sys

from sgl_jax.srt.configs.model_config import ModelConfig
from sgl_jax.srt.server_args import ServerArgs

results = []
for argv in json.load(sys.stdin):
    try:
        args = ServerArgs.from_cli(list(argv))
        args.check_server_args()
        ModelConfig.from_server_args(args).validate_tensor_parallel_config(
            args.tp_size // args.dp_size)
        results.append({"ok": True, "tp": args.tp_size, "dp": args.dp_size,
                        "nnodes": args.nnodes, "node_rank": args.node_rank})
    except (Exception, SystemExit) as e:  # argparse exits on bad flags
        results.append({"ok": False, "error": f"{type(e).__name__}: {e}"})
print(json.dumps(results))
