"""The fake provider of bench/outbound_pacing.py, run in a process of its own: SendGrid's
mail/send answering after `--latency` seconds, stamping when each request reaches it.

It lives apart from the bench so that nothing else in its process (the bench holds the whole
app) can pause it, and it is one asyncio loop rather than a thread per request, so that a
request is stamped as soon as its bytes are read, not when a thread gets the GIL: a pause of the
provider holds arriving requests in its socket and stamps them together afterwards, a burst no
sender caused. Its own garbage-collection pauses are recorded and reported with the arrivals.

    python bench/slow_provider.py --latency 0.1      # prints its port on the first line

GET /_bench/count returns {"count": n}; GET /_bench/arrivals {"arrivals": [...], "longest_gc_pause": s};
POST /_bench/reset clears both.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time

REASONS = {200: "OK", 202: "Accepted", 204: "No Content", 400: "Bad Request", 404: "Not Found"}


class Provider:
    def __init__(self, latency: float):
        self.latency = latency
        self.arrivals: list[float] = []
        self.gc_pauses: list[float] = []
        self._collection_started = 0.0
        gc.callbacks.append(self._on_collection)

    def _on_collection(self, phase, info) -> None:
        if phase == "start":
            self._collection_started = time.monotonic()
        else:
            self.gc_pauses.append(time.monotonic() - self._collection_started)

    async def answer(self, method: str, path: str, arrived: float) -> tuple[int, dict, bytes]:
        if (method, path) == ("POST", "/v3/mail/send"):
            self.arrivals.append(arrived)
            number = len(self.arrivals)
            await asyncio.sleep(self.latency)
            return 202, {"X-Message-Id": f"bench{number}"}, b""
        if (method, path) == ("GET", "/_bench/count"):
            return 200, {}, json.dumps({"count": len(self.arrivals)}).encode()
        if (method, path) == ("GET", "/_bench/arrivals"):
            body = {"arrivals": self.arrivals, "longest_gc_pause": max(self.gc_pauses, default=0.0)}
            return 200, {}, json.dumps(body).encode()
        if (method, path) == ("POST", "/_bench/reset"):
            self.arrivals.clear()
            self.gc_pauses.clear()
            return 204, {}, b""
        return 404, {}, b""

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """HTTP/1.1 with keep-alive, as the senders' connection pools use it."""
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                arrived = time.monotonic()
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
                await reader.readexactly(int(headers.get("content-length", "0")))
                status, extra, body = await self.answer(method, path, arrived)
                extra = {**extra, "Content-Length": str(len(body)), "Content-Type": "application/json"}
                writer.write(f"HTTP/1.1 {status} {REASONS[status]}\r\n".encode()
                             + "".join(f"{k}: {v}\r\n" for k, v in extra.items()).encode() + b"\r\n" + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def serve(latency: float) -> None:
    provider = Provider(latency)
    server = await asyncio.start_server(provider.connection, "127.0.0.1", 0, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    sys.stdout.close()
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.1)
    asyncio.run(serve(parser.parse_args().latency))


if __name__ == "__main__":
    main()
