"""A local TPU v2 REST server plus SSH-reachable workers: a real fake of Cloud TPU.

The server depends on nothing above it in tpuctl (only on `tpuctl.accelerators` for the
catalog); `control.py` is its client side (start, stop, admin calls) for `tpuctl emulator`.
"""
