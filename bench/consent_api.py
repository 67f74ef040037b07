"""Benchmark of the consent API: a cached consent check against a no-op view, and a withdraw-then-check race.

    DATABASE_URL=postgres://... REDIS_URL=redis://... .venv/bin/python -m bench.consent_api [--requests 4000] [--smoke]

PostgreSQL and Redis only: the production shape. In a scratch database created for the run and dropped at
the end, it loads the register, makes `--subjects` accounts that gave marketing consent, and two API keys.
Then it starts a real gunicorn (gthread workers, keep-alive, persistent database connections) on a free
loopback port against that database and Redis, and drives it from `--clients` threads, each with its own
keep-alive `http.client` connection:

(a) latency, through the same middleware: `/healthz` (a no-op Django view), `/readyz` (the same plus one
    `SELECT 1`), the floor `/bench/floor/<ref>` (a view that makes only the read the guarantee needs: the
    subject's account and chain version, `consents.selectors.subject_snapshots`, served by the bench's own
    URLconf, bench/_api_urls.py) and `GET /api/v1/subjects/<ref>/purposes/marketing` with a bearer key, the
    answers already cached (every subject is asked once before measuring). The four alternate in `--rounds`
    rounds so drift hits them alike. Reported: mean, p50 and p95 per endpoint; `api_vs_floor_latency` =
    mean(api) / mean(floor), target <= 1.2 (issue 11); `api_vs_noop_latency` = mean(api) / mean(no-op),
    `floor_vs_noop_latency` and `select1_vs_noop_latency` (/readyz). The floor is there because the
    guarantee (a check that starts after a withdrawal's commit says "not allowed") makes every check read the
    person's chain version from the database: no design that keeps it can answer faster than that read.
(b) race: per client thread, its own subjects in turn: check (cached "allowed"), `POST /api/v1/consent-events`
    withdrawn, then at once check again -- any "allowed" there is stale (`stale_after_withdraw`, must be 0);
    then consent is given again through the API for the next lap.

The last line is `RESULT api_vs_floor_latency=<ratio> stale_after_withdraw=<n> ...`; the exit status is 1 when a
stale answer was seen or a request failed (a missed latency target is reported, not failed: loaded machines
vary).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

from bench import _scratch

SMOKE = {"subjects": 40, "requests": 400, "laps": 60, "rounds": 2}
PREFIX = f"privacyops_bench_api_{os.getpid()}"
TARGET = 1.2  # api_vs_floor_latency
ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _redis_reachable(url: str) -> bool:
    parts = urlparse(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), timeout=2):
            return True
    except OSError:
        return False


# --- The scratch database -------------------------------------------------------------------------------


def _prepare(name: str, *, subjects: int) -> dict:
    """Migrate the scratch database, load the register, make the subjects (marketing given) and two keys."""
    from django.core.management import call_command
    from django.db import connection

    connection.settings_dict.setdefault("TEST", {})["NAME"] = name
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    call_command("loadpolicy", verbosity=0)

    from accounts.models import User
    from consents.api.keys import apikey_create
    from consents.ledger import consent_record
    from consents.models import ConsentPurpose

    marketing = ConsentPurpose.objects.get(code="marketing-communications")
    refs = []
    for n in range(subjects):
        user = User.objects.create(email=f"bench{n}@example.org", country=("FR", "GB", "SG", "BR")[n % 4])
        consent_record(purpose=marketing, action="given", method="api", subject=user)
        refs.append(str(user.subject_ref))
    limit = 10**9  # the bench measures the API, not its rate limit
    _read, read_token = apikey_create(actor=None, name="bench-read", scope="read", rate_limit_per_minute=limit)
    _write, write_token = apikey_create(actor=None, name="bench-write", scope="write", rate_limit_per_minute=limit)
    connection.close()
    return {"refs": refs, "read": read_token, "write": write_token}


# --- The server -------------------------------------------------------------------------------------------


class Server:
    """gunicorn on 127.0.0.1:<port>, production settings (DEBUG off) on the scratch database and Redis."""

    def __init__(self, *, database_url: str, redis_url: str, workers: int, threads: int):
        self.port = _free_port()
        env = {key: value for key, value in os.environ.items() if not key.startswith(("CELERY_", "PYTEST_"))}
        env.update(
            DJANGO_SETTINGS_MODULE="bench._api_settings",  # the project's settings and URLs, plus the floor view
            DATABASE_URL=database_url,
            REDIS_URL=redis_url,
            DEBUG="false",
            SECRET_KEY=secrets.token_urlsafe(32),
            PSEUDONYM_KEY=secrets.token_urlsafe(32),
            EXPORT_ENCRYPTION_KEY="YmVuY2gta2V5LW5vdC1zZWNyZXQtYmVuY2gta2V5LTE=",
            ALLOWED_HOSTS="127.0.0.1",
            SECURE_SSL_REDIRECT="false",  # plain HTTP on loopback; production terminates TLS in front
            CONN_MAX_AGE="60",  # persistent connections, as a production deployment sets
            LOG_LEVEL="WARNING",
        )
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "privacyops.wsgi:application",
            f"--bind=127.0.0.1:{self.port}",
            "--worker-class=gthread",
            f"--workers={workers}",
            f"--threads={threads}",
            "--keep-alive=30",
            "--log-level=warning",
        ]
        self.process = subprocess.Popen(command, env=env, cwd=ROOT)  # noqa: S603 -- a fixed argv
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"gunicorn exited with status {self.process.returncode}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    conn.close()
                    return
            except OSError:
                time.sleep(0.2)
        raise SystemExit("gunicorn did not answer /healthz within 60 s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Client:
    """One keep-alive connection; `call` returns (status, body, seconds)."""

    def __init__(self, port: int):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def call(self, method: str, path: str, *, token: str | None = None, body: dict | None = None, retry: bool = True):
        headers = {"Connection": "keep-alive"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        start = time.perf_counter()
        try:
            self.conn.request(method, path, body=payload, headers=headers)
            response = self.conn.getresponse()
            data = response.read()
        except (http.client.HTTPException, OSError):
            if not retry:
                raise
            # The server closed an idle keep-alive connection: reconnect once, outside the measurement.
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            return self.call(method, path, token=token, body=body, retry=False)
        return response.status, data, time.perf_counter() - start


def _in_threads(count: int, work) -> list:
    """Run work(index) in `count` threads at once; returns their results in order (re-raises the first error)."""
    results: list = [None] * count
    errors: list[BaseException] = []
    barrier = threading.Barrier(count)

    def run(index: int):
        try:
            barrier.wait()
            results[index] = work(index)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def _check_path(ref: str) -> str:
    return f"/api/v1/subjects/{ref}/purposes/marketing"


def _floor_path(ref: str) -> str:
    return f"/bench/floor/{ref}"


def _latency(port: int, data: dict, *, clients: int, requests: int, rounds: int) -> dict:
    """Seconds per request for the no-op view and the cached check, from all clients, alternating by round."""
    refs, token = data["refs"], data["read"]
    samples: dict[str, list[float]] = {"noop": [], "select1": [], "floor": [], "api": []}
    failures = 0
    per_client = max(1, requests // clients // rounds)

    # Warm-up: every worker thread connected, every answer cached, both code paths imported and compiled.
    def warm(index: int):
        client = Client(port)
        for n in range(index, len(refs), clients):
            client.call("GET", _check_path(refs[n]), token=token)
            client.call("GET", _floor_path(refs[n]))
        for _ in range(20):
            client.call("GET", "/healthz")
            client.call("GET", "/readyz")
        return client

    pool = _in_threads(clients, warm)
    for _round in range(rounds):
        for name in ("noop", "select1", "floor", "api"):

            def work(index: int, name=name):
                client, times, bad = pool[index], [], 0
                for n in range(per_client):
                    ref = refs[(index * per_client + n) % len(refs)]
                    if name == "noop":
                        status, _body, seconds = client.call("GET", "/healthz")
                    elif name == "select1":
                        status, _body, seconds = client.call("GET", "/readyz")
                    elif name == "floor":
                        status, _body, seconds = client.call("GET", _floor_path(ref))
                    else:
                        status, _body, seconds = client.call("GET", _check_path(ref), token=token)
                    bad += status != 200
                    times.append(seconds)
                return times, bad

            for times, bad in _in_threads(clients, work):
                samples[name].extend(times)
                failures += bad
    return {"samples": samples, "failures": failures}


def _race(port: int, data: dict, *, clients: int, laps: int) -> dict:
    """Check, withdraw, check at once; count the second checks that still say allowed."""
    refs, read, write = data["refs"], data["read"], data["write"]

    def work(index: int):
        client = Client(port)
        mine = refs[index::clients]
        counts = {"stale": 0, "warm_allowed": 0, "laps": 0, "failures": 0}
        for lap in range(laps):
            ref = mine[lap % len(mine)]
            status, body, _ = client.call("GET", _check_path(ref), token=read)
            counts["warm_allowed"] += status == 200 and json.loads(body)["allowed"] is True
            event = {"subject_ref": ref, "purpose": "marketing-communications", "action": "withdrawn"}
            status, _body, _ = client.call("POST", "/api/v1/consent-events", token=write, body=event)
            counts["failures"] += status != 201
            status, body, _ = client.call("GET", _check_path(ref), token=read)
            counts["failures"] += status != 200
            counts["stale"] += status == 200 and json.loads(body)["allowed"] is True
            event["action"] = "given"  # ready for the next lap on this subject
            status, _body, _ = client.call("POST", "/api/v1/consent-events", token=write, body=event)
            counts["failures"] += status != 201
            counts["laps"] += 1
        return counts

    total = {"stale": 0, "warm_allowed": 0, "laps": 0, "failures": 0}
    for counts in _in_threads(clients, work):
        for key, value in counts.items():
            total[key] += value
    return total


def _ms(values: list[float]) -> dict:
    ordered = sorted(values)
    return {
        "mean": statistics.fmean(ordered) * 1000,
        "p50": ordered[len(ordered) // 2] * 1000,
        "p95": ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))] * 1000,
        "n": len(ordered),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=400, help="accounts with a cached answer (default 400)")
    parser.add_argument("--requests", type=int, default=8000, help="requests per endpoint in the latency phase")
    parser.add_argument("--rounds", type=int, default=4, help="alternating no-op/API rounds (default 4)")
    parser.add_argument("--clients", type=int, default=4, help="load-generating threads (default 4)")
    parser.add_argument("--laps", type=int, default=200, help="withdraw-then-check laps per client (default 200)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes (default 2)")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker (default 4)")
    parser.add_argument("--smoke", action="store_true", help="a quick run (CI): " + json.dumps(SMOKE))
    parser.add_argument("--database-url", help="PostgreSQL server to use (default: DATABASE_URL)")
    parser.add_argument("--redis-url", help="Redis to use (default: REDIS_URL)")
    args = parser.parse_args(argv)
    if args.database_url:
        os.environ["DATABASE_URL"] = args.database_url
    if args.redis_url:
        os.environ["REDIS_URL"] = args.redis_url
    if args.smoke:
        for key, value in SMOKE.items():
            setattr(args, key, value)

    _scratch.django_setup()
    from django.conf import settings
    from django.db import connection

    if connection.vendor != "postgresql":
        print(
            f"bench.consent_api needs PostgreSQL (the configured database is {connection.vendor}): "
            "set DATABASE_URL=postgres://... or pass --database-url.",
            file=sys.stderr,
        )
        return 2
    if not settings.REDIS_URL:
        print(
            "bench.consent_api needs Redis, the production cache: set REDIS_URL=redis://... or pass --redis-url.", file=sys.stderr
        )
        return 2
    if not _redis_reachable(settings.REDIS_URL):
        print(f"bench.consent_api: Redis at {settings.REDIS_URL} is unreachable.", file=sys.stderr)
        return 2

    settings_dict = dict(connection.settings_dict)
    server = None
    print(
        f"consent API bench: {args.subjects} subjects, {args.requests} requests per endpoint in {args.rounds} rounds, "
        f"{args.clients} clients, gunicorn {args.workers}x{args.threads} gthread, scratch {PREFIX}",
        flush=True,
    )
    try:
        data = _prepare(PREFIX, subjects=args.subjects)  # new subject_refs: no cached answer can match them
        server = Server(
            database_url=_scratch.Server(settings_dict).url(PREFIX),
            redis_url=settings.REDIS_URL,
            workers=args.workers,
            threads=args.threads,
        )
        latency = _latency(server.port, data, clients=args.clients, requests=args.requests, rounds=args.rounds)
        noop, select1, floor, api = (_ms(latency["samples"][name]) for name in ("noop", "select1", "floor", "api"))
        for name, stats in (
            ("no-op /healthz", noop),
            ("SELECT 1 /readyz", select1),
            ("floor: the read", floor),
            ("cached check", api),
        ):
            figures = f"mean {stats['mean']:.3f} ms, p50 {stats['p50']:.3f} ms, p95 {stats['p95']:.3f} ms"
            print(f"{name:>16}: {figures} ({stats['n']} requests)", flush=True)
        ratio = api["mean"] / noop["mean"]
        floor_ratio = floor["mean"] / noop["mean"]
        api_vs_floor = api["mean"] / floor["mean"]
        race = _race(server.port, data, clients=args.clients, laps=args.laps)
        print(
            f"race: {race['laps']} withdraw-then-check laps, {race['warm_allowed']} checks said allowed before the "
            f"withdrawal, {race['stale']} said allowed after it; failed requests {race['failures'] + latency['failures']}",
            flush=True,
        )
        if api_vs_floor > TARGET:
            print(f"api_vs_floor_latency {api_vs_floor:.2f} is above the target {TARGET}", flush=True)
        print(
            f"floor: the one read the guarantee needs costs {floor_ratio:.2f}x the no-op on this machine "
            f"(SELECT 1: {select1['mean'] / noop['mean']:.2f}x); the check, which must make it, costs "
            f"{api_vs_floor:.2f}x that",
            flush=True,
        )
        print(
            f"RESULT api_vs_floor_latency={api_vs_floor:.2f} stale_after_withdraw={race['stale']} "
            f"api_vs_noop_latency={ratio:.2f} api_p50_ms={api['p50']:.3f} api_p95_ms={api['p95']:.3f} "
            f"noop_p50_ms={noop['p50']:.3f} noop_p95_ms={noop['p95']:.3f} floor_vs_noop_latency={floor_ratio:.2f} "
            f"select1_vs_noop_latency={select1['mean'] / noop['mean']:.2f} race_laps={race['laps']}",
            flush=True,
        )
        failed = race["failures"] + latency["failures"]
        return 0 if race["stale"] == 0 and failed == 0 else 1
    finally:
        if server is not None:
            server.stop()
        connection.close()
        _scratch.Server(settings_dict).drop(PREFIX)


if __name__ == "__main__":
    sys.exit(main())
