#!/usr/bin/env python3
"""Slowloris against a server already listening on 127.0.0.1:PORT, beside wrk.

Usage: bench/slowloris.py PORT [CONNS=5000] [WRK_SECS=8] [CPU=1]

1. wrk -t1 -c64 -dWRK_SECS /plaintext alone (pinned to CPU) -> requests/s.
2. CONNS connections, each sending a ~1 KB request head one byte every
   10 s (the first byte at once), pinned to CPU with the rest of this script.
3. As soon as they are all connected, the same wrk again -> requests/s.
4. Waits until every slow connection is closed by the server (bounded:
   60 s after the last connect), then reports the wrk ratio and the time
   from connect to close (min / median / max) and the status each got.

Bounded in time and count; loopback only. Needs wrk and taskset.
"""

import asyncio
import os
import re
import statistics
import subprocess
import sys
import time

HEAD = (
    b"GET /plaintext HTTP/1.1\r\nHost: slow\r\n"
    + b"".join(b"X-Pad-%d: %s\r\n" % (i, b"p" * 40) for i in range(20))
    + b"\r\n"
)  # about 1 KB
BYTE_EVERY = 10.0


def wrk(port, secs, cpu):
    cmd = ["wrk", "-t1", "-c64", f"-d{secs}", f"http://127.0.0.1:{port}/plaintext"]
    if cpu is not None:
        cmd = ["taskset", "-c", str(cpu)] + cmd
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=secs + 30).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    timeouts = re.search(r"Socket errors:.*timeout (\d+)", out)
    return (
        float(m.group(1)) if m else 0.0,
        int(errors.group(1)) if errors else 0,
        int(timeouts.group(1)) if timeouts else 0,
    )


async def slow(port, results, connected, stop_at):
    t0 = time.monotonic()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as e:
        results.append(("connect-error", 0.0, str(e)))
        connected.append(False)
        return
    connected.append(True)
    t0 = time.monotonic()
    status = "closed-without-response"
    sent = 0

    async def trickle():
        nonlocal sent
        while sent < len(HEAD):
            writer.write(HEAD[sent : sent + 1])
            sent += 1
            await writer.drain()
            await asyncio.sleep(BYTE_EVERY)

    task = asyncio.create_task(trickle())
    try:
        data = await asyncio.wait_for(reader.read(4096), timeout=stop_at - time.monotonic())
        if data.startswith(b"HTTP/1.1 "):
            status = data[9:12].decode()
            # Then the close.
            await asyncio.wait_for(reader.read(4096), timeout=stop_at - time.monotonic())
    except asyncio.TimeoutError:
        status = "still-open"
    except (ConnectionError, OSError):
        status = "reset"
    elapsed = time.monotonic() - t0
    task.cancel()
    writer.close()
    results.append((status, elapsed, f"{sent} bytes sent"))


async def run_slow(port, conns, wrk_secs, cpu):
    results, connected = [], []
    stop_at = time.monotonic() + 60 + conns / 500
    tasks = []
    for i in range(conns):
        tasks.append(asyncio.create_task(slow(port, results, connected, stop_at)))
        if i % 200 == 199:
            await asyncio.sleep(0)  # let connects proceed
    while len(connected) < conns and time.monotonic() < stop_at:
        await asyncio.sleep(0.01)
    connect_done = time.monotonic()
    loop = asyncio.get_running_loop()
    loaded = await loop.run_in_executor(None, wrk, port, wrk_secs, cpu)
    wrk_done = time.monotonic()
    await asyncio.gather(*tasks)
    return results, loaded, wrk_done - connect_done


def main():
    port = int(sys.argv[1])
    conns = int(sys.argv[2]) if len(sys.argv) > 2 else 5000
    wrk_secs = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    cpu = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError:
        pass
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, conns + 1024), hard))
    alone = wrk(port, wrk_secs, cpu)
    results, loaded, wrk_span = asyncio.run(run_slow(port, conns, wrk_secs, cpu))
    times = sorted(r[1] for r in results if r[0] not in ("connect-error",))
    statuses = {}
    for r in results:
        statuses[r[0]] = statuses.get(r[0], 0) + 1
    print(f"wrk_alone_rps={alone[0]:.0f} non2xx={alone[1]} timeouts={alone[2]}")
    print(f"wrk_with_slow_rps={loaded[0]:.0f} non2xx={loaded[1]} timeouts={loaded[2]}")
    if alone[0]:
        print(f"ratio={loaded[0] / alone[0] * 100:.1f}%")
    print(f"slow_connections={conns} statuses={statuses}")
    if times:
        print(
            "closed_after_secs min={:.2f} median={:.2f} max={:.2f}".format(
                times[0], statistics.median(times), times[-1]
            )
        )
    print(f"wrk_ran_within_slow_lifetime={wrk_span:.1f}s after all connected")
    # A byte sent as the server closes makes the kernel answer RST, which
    # discards the 408 still unread on our side: "reset" is a server close
    # too. Every connection must be closed by the server, none left open.
    closed = statuses.get("408", 0) + statuses.get("reset", 0)
    ok = closed == conns
    print(f"closed_by_server={closed} (408 read: {statuses.get('408', 0)})")
    print("result=" + ("PASS" if ok else "FAIL"))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
