"""tpuctl: run JAX work on Google Cloud TPU VMs without gcloud glue."""

__version__ = "0.1.0"
