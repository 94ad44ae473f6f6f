"""Real processes for browser tests: the app served over HTTP on loopback, and a real
RQ worker (`python worker.py`) in a subprocess pointed at the same database and Redis."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from flask import Flask
from redis import Redis
from rq import Worker
from werkzeug.serving import make_server

ROOT = Path(__file__).resolve().parent.parent


class LiveServer:
    """The Flask app served by werkzeug in a background thread, on a free port of 127.0.0.1."""

    def __init__(self, app: Flask):
        self.app = app
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="live-server", daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class WorkerProcess:
    """`python worker.py` as a subprocess with the environment given; its output goes to log_path."""

    def __init__(self, env: dict[str, str], log_path: Path, *, redis_url: str, queue: str):
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.redis_url = redis_url
        self.queue = queue
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> WorkerProcess:
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen([sys.executable, str(ROOT / "worker.py")], cwd=ROOT, env=self.env,
                                        stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        return self  # it starts up while the test drives the browser; see wait_until_listening

    def wait_until_listening(self, timeout: float = 15.0) -> None:
        """Wait until the worker has registered itself in Redis for our queue (or say why not)."""
        redis = Redis.from_url(self.redis_url)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker.py exited with {self.process.returncode}:\n{self.output()}")
            workers = Worker.all(connection=redis)
            if any(w.pid == self.process.pid and self.queue in w.queue_names() for w in workers):
                return
            time.sleep(0.1)
        raise RuntimeError(f"worker.py did not start listening within {timeout:g}s:\n{self.output()}")

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def __exit__(self, *exc) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # RQ's warm shutdown
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        # A worker killed by a test leaves its scheduler child behind, holding the scheduler lock of
        # the test queue and taking due jobs from later tests: end whatever of its group is left.
        if self.process:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._log.close()
