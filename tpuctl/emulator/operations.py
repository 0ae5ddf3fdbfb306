"""Long-running operations: every mutating call answers one, finished later by the task that
moves its resource (with a response, or a google.rpc error)."""

from __future__ import annotations

import secrets
import time
from typing import Any

from tpuctl.emulator.errors import not_found
from tpuctl.emulator.persistence import Store
from tpuctl.emulator.resources import (
    EMPTY_TYPE,
    OPERATION_METADATA_TYPE,
    check_location,
    now_rfc3339,
)


class Operations:
    """The operations of a `Store`, as the API reads, deletes and cancels them."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def new(self, parent: str, verb: str, target: str) -> dict[str, Any]:
        ms = int(time.time() * 1000)
        op_id = f"operation-{ms}-{secrets.token_hex(7)[:13]}-{secrets.token_hex(4)}-" + (
            secrets.token_hex(4)
        )
        op: dict[str, Any] = {
            "name": f"{parent}/operations/{op_id}",
            "metadata": {
                "@type": OPERATION_METADATA_TYPE,
                "createTime": now_rfc3339(),
                "target": target,
                "verb": verb,
                "cancelRequested": False,
                "apiVersion": "v2",
            },
            "done": False,
        }
        self._store.operations[op["name"]] = op
        return op

    def finish(
        self,
        op_name: str | None,
        *,
        response: dict[str, Any] | None = None,
        error: tuple[int, str] | None = None,
    ) -> None:
        op = self._store.operations.get(op_name or "")
        if op is None or op.get("done"):
            return
        op["done"] = True
        op["metadata"]["endTime"] = now_rfc3339()
        if error is not None:
            op["error"] = {"code": error[0], "message": error[1]}
        else:
            op["response"] = response if response is not None else {"@type": EMPTY_TYPE}

    def get(self, name: str) -> dict[str, Any]:
        op = self._store.operations.get(name)
        if op is None:
            raise not_found(name)
        return op

    def under(self, parent: str) -> list[dict[str, Any]]:
        check_location(parent)
        prefix = parent + "/operations/"
        return [op for name, op in self._store.operations.items() if name.startswith(prefix)]

    def delete(self, name: str) -> None:
        self.get(name)
        del self._store.operations[name]
        self._store.save()

    def cancel(self, name: str) -> None:
        """Recorded only: like many GCP operations, these cannot really be cancelled."""
        op = self.get(name)
        if not op.get("done"):
            op["metadata"]["cancelRequested"] = True
            self._store.save()
