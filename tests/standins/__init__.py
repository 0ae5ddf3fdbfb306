"""Stand-ins for external programs (sglang-jax server), for tests without a TPU."""
