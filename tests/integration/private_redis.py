"""A redis-server of the test's own, on a free loopback port, that a test may
kill (SIGKILL) and start again empty: no snapshot, no append-only file."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import redis

from tests.conftest import free_port, service_missing, wait_until

START_SECONDS = 20


class PrivateRedis:
    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1)

    def start(self) -> PrivateRedis:
        """Start on the same port every time; it comes up empty."""
        binary = shutil.which("redis-server")
        if binary is None:
            service_missing("redis-server is not installed")
        assert binary is not None
        self.starts += 1
        with (self.folder / f"redis-{self.starts}.log").open("wb") as log:
            # Nothing kept on disk: a restart comes up empty, like a flushed Redis.
            volatile = ["--save", "", "--appendonly", "no", "--dir", str(self.folder)]
            self.process = subprocess.Popen(
                [binary, "--port", str(self.port), "--bind", "127.0.0.1", *volatile],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(self.answers, START_SECONDS, f"redis-server on port {self.port}")
        return self

    def answers(self) -> bool:
        client = self.client()
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: whatever it held in memory is gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def queue_length(self, queue: str) -> int:
        client = self.client()
        try:
            return int(client.llen(queue))  # kombu keeps a queue as a Redis list
        finally:
            client.close()
