"""An SMTP server on loopback that accepts everything and logs each recipient.

For the soak test: one JSON line per accepted (recipient, Message-ID), so the
ledger can be checked against what the relay really received.

Usage: python bench/smtp_log_server.py PORT LOGFILE
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


class LoggingHandler:
    def __init__(self, log: Path) -> None:
        self.log = log.open("a", encoding="utf-8", buffering=1)
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        headers = BytesHeaderParser().parsebytes(envelope.content)
        message_id = str(headers.get("Message-ID", ""))
        with self.lock:
            for recipient in envelope.rcpt_tos:
                self.log.write(json.dumps({"to": recipient, "message_id": message_id}) + "\n")
        return "250 Message accepted"


def main() -> None:
    port, log = int(sys.argv[1]), Path(sys.argv[2])
    controller = Controller(LoggingHandler(log), hostname="127.0.0.1", port=port)
    controller.start()
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    stopped.wait()
    controller.stop()


if __name__ == "__main__":
    main()
