"""The Workers port: run commands on the hosts of a slice, in parallel."""
