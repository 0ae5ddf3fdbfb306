"""The Cloud port and its adapters."""
