"""``alerts up``, ``alerts web``, ``alerts worker``, ``alerts clock``.

The worker and clock run the ``workers`` package in their own processes, so
``alerts/`` never imports Celery; ``up`` starts all three and stops them together.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from types import FrameType
from urllib.parse import urlsplit

from alerts.cli import port_number, positive_int
from alerts.config import get_settings
from alerts.db import get_database
from alerts.health import all_checks, is_loopback
from alerts.logs import configure_logging
from alerts.metrics import reset as reset_metrics
from alerts.sender_checks import dns_records

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})  # noqa: S104 - names them, binds nothing
DEFAULT_PORTS = {"http": 80, "https": 443}
# How long children get to finish their work after SIGTERM before SIGKILL.
STOP_GRACE_SECONDS = 20
THREADED_MALLOC_ARENAS = "2"
CHILD_POLL_SECONDS = 0.5


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    up = subparsers.add_parser("up", help="run web app, worker and clock together")
    _add_bind_arguments(up)
    up.set_defaults(handler=run_up)

    web = subparsers.add_parser("web", help="run the web app")
    _add_bind_arguments(web)
    web.set_defaults(handler=run_web)

    worker = subparsers.add_parser("worker", help="run a Celery worker")
    worker.add_argument(
        "--concurrency",
        type=positive_int,
        help="threads or processes (default: ALERTS_WORKER_CONCURRENCY)",
    )
    worker.add_argument(
        "--pool",
        choices=["prefork", "threads", "solo"],
        help="Celery pool (default: threads on the embedded broker, prefork otherwise)",
    )
    worker.add_argument(
        "--metrics-port",
        type=port_number,
        help="serve this machine's metrics (for workers on other hosts)",
    )
    worker.add_argument("--queues", help="comma-separated queues to consume (default: all of them)")
    worker.add_argument(
        "--max-memory-per-child",
        type=positive_int,
        metavar="MB",
        help="prefork: replace a process whose memory passed this, once its task is done",
    )
    worker.set_defaults(handler=run_worker)

    clock = subparsers.add_parser("clock", help="run the scheduler (one per deployment)")
    clock.set_defaults(handler=run_clock)

    doctor = subparsers.add_parser("doctor", help="check settings, services, DKIM and mail")
    doctor.set_defaults(handler=run_doctor)


def run_doctor(_args: argparse.Namespace) -> int:
    """Say what is wrong in plain words; exit 1 when anything is."""
    settings = get_settings()
    checks = all_checks(settings)
    for check in checks:
        mark = "FAIL" if not check.ok else "warn" if check.warning else "ok  "
        print(f"{mark}  {check.name}: {check.detail}")
    records = dns_records(settings)
    if records:
        print("DNS records to publish (starting points; nothing was looked up):")
        for record in records:
            print(f"  {record}")
    failed = [check.name for check in checks if not check.ok]
    warned = [check.name for check in checks if check.ok and check.warning]
    if failed:
        print(f"{len(failed)} problem(s): {', '.join(dict.fromkeys(failed))}")
    else:
        names = ", ".join(dict.fromkeys(warned))
        print(f"all good, but {len(warned)} warning(s) above ({names})" if warned else "all good")
    return 1 if failed else 0


def _add_bind_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"address to listen on (default {DEFAULT_HOST}; 0.0.0.0 for every interface)",
    )
    parser.add_argument(
        "--port",
        type=port_number,
        default=DEFAULT_PORT,
        help=f"port to listen on (default {DEFAULT_PORT})",
    )


def links_follow_bind(host: str, port: int) -> str:
    """Point mail links at the address the web app really listens on.

    With ALERTS_BASE_URL unset, ``alerts up --port 8123`` would otherwise mail
    links to port 8000 that nothing answers. The value goes into the
    environment, so the worker and clock started next send the same links.
    An explicit base URL is kept; a warning names a loopback one whose port
    differs from the one served.
    """
    settings = get_settings()
    if "base_url" not in settings.model_fields_set:
        link_host = DEFAULT_HOST if host in WILDCARD_HOSTS else host
        if ":" in link_host:  # an IPv6 address needs brackets in a URL
            link_host = f"[{link_host}]"
        os.environ["ALERTS_BASE_URL"] = f"http://{link_host}:{port}"
        get_settings.cache_clear()
        return os.environ["ALERTS_BASE_URL"]
    url = urlsplit(settings.base_url)
    if is_loopback(url.hostname) and (url.port or DEFAULT_PORTS.get(url.scheme)) != port:
        print(
            f"alerts: warning: ALERTS_BASE_URL is {settings.base_url}, but the web app "
            f"listens on port {port}: links in mail will not reach it",
            file=sys.stderr,
        )
    return settings.base_url


def run_web(args: argparse.Namespace) -> int:
    import uvicorn

    links_follow_bind(args.host, args.port)
    configure_logging(get_settings(), "web")
    get_database()  # migrate before the first request
    uvicorn.run(
        "alerts.web.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        log_config=None,  # uvicorn's loggers go through the project's handler
        # uvicorn would believe X-Forwarded-* from 127.0.0.1 by default; the app
        # reads them itself, from ALERTS_TRUSTED_PROXIES only (alerts.web.security).
        proxy_headers=False,
        server_header=False,
    )
    return 0


def worker_command(args: argparse.Namespace) -> list[str]:
    settings = get_settings()
    embedded = settings.resolved_broker_url.startswith("filesystem://")
    # Threads suit the embedded broker and SQLite (one process, shared files);
    # prefork is Celery's production default.
    pool = args.pool or ("threads" if embedded else "prefork")
    command = [
        sys.executable,
        "-m",
        "celery",
        "--app",
        "workers.celery_app:app",
        "worker",
        "--loglevel",
        "INFO",
        "--pool",
        pool,
        "--concurrency",
        str(args.concurrency or settings.worker_concurrency),
        "--without-gossip",
        "--without-mingle",
    ]
    if args.max_memory_per_child:
        command += ["--max-memory-per-child", str(args.max_memory_per_child * 1024)]  # KiB
    queues = args.queues or ",".join(sorted(set(settings.job_queues.values())))
    return [*command, "--queues", queues]


def run_worker(args: argparse.Namespace) -> int:
    get_database()
    if args.metrics_port:
        metrics_server = [sys.executable, "-m", "alerts.metrics", str(args.metrics_port)]
        subprocess.Popen(metrics_server)  # noqa: S603 - our own module; dies with the host
    command = worker_command(args)
    if command[command.index("--pool") + 1] == "threads":
        # glibc gives each thread its own malloc arena and rarely hands their
        # free pages back; two arenas keep a threaded worker's memory flat.
        os.environ.setdefault("MALLOC_ARENA_MAX", THREADED_MALLOC_ARENAS)
    os.execv(command[0], command)  # noqa: S606 - replaces this process with the worker


def run_clock(_args: argparse.Namespace) -> int:
    get_database()
    command = [sys.executable, "-m", "workers.clock"]
    os.execv(command[0], command)  # noqa: S606


def run_up(args: argparse.Namespace) -> int:
    base_url = links_follow_bind(args.host, args.port)
    get_database()  # migrate once, before three processes race to do it
    reset_metrics()
    alerts = [sys.executable, "-m", "alerts"]
    commands = {
        "web": [*alerts, "web", "--host", args.host, "--port", str(args.port)],
        "worker": [*alerts, "worker"],
        "clock": [*alerts, "clock"],
    }
    children = {name: subprocess.Popen(command) for name, command in commands.items()}  # noqa: S603
    stopping = False

    def stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(
        f"alerts up: web on http://{args.host}:{args.port}/, links in mail to {base_url}/, "
        "worker and clock running",
        flush=True,
    )
    exit_code = 0
    while not stopping:
        for name, child in children.items():
            if child.poll() is not None:
                print(f"alerts up: {name} exited with {child.returncode}", file=sys.stderr)
                exit_code, stopping = 1, True
        time.sleep(CHILD_POLL_SECONDS)
    _stop_children(list(children.values()))
    return exit_code


def _stop_children(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            child.terminate()
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for child in children:
        try:
            child.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
