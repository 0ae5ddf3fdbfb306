"""The `Http` port on aiohttp: requests to a server on a worker, through a forwarded port.

Imported only by the commands that send one (`generate`): aiohttp costs ~0.15 s to import.
"""

from __future__ import annotations

from typing import Any

from tpuctl.ops.ports import HttpReply


class AiohttpClient:
    async def post_json(self, url: str, body: dict[str, Any], *, timeout: float
                        ) -> HttpReply:
        import asyncio

        import aiohttp

        try:
            async with aiohttp.ClientSession(
                    timeout=aiohttp.ClientTimeout(total=timeout)) as http:
                async with http.post(url, json=body) as resp:
                    return HttpReply(resp.status, await resp.text())
        except asyncio.TimeoutError:  # (Python 3.10: not the builtin TimeoutError)
            raise TimeoutError(f"no answer within {timeout:g}s") from None
        except aiohttp.ClientError as e:
            raise ConnectionError(str(e) or type(e).__name__) from None
