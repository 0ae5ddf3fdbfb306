"""A local TPU v2 REST server plus SSH-reachable workers: a real fake of Cloud TPU.

Depends on nothing above it in tpuctl (only on `tpuctl.accelerators` for the catalog).
"""
