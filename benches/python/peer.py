#!/usr/bin/env python3
"""Python's multiprocessing on the procsync benchmark workloads (W1-W9N).

Standard library only, fork start method (spawn for the one W6 figure that
names it). Prints one JSON object per line, in the units of
docs/benchmarks.md:

    {"workload": "W1", "contender": "python-multiprocessing", "value": 34.5, "unit": "ns"}

W7 and W8 print an "outcome" instead of a value; W9 and W9N print message
throughput in millions of messages per second ("Mmsg/s"). Run:
python3 benches/python/peer.py [W1 W9 ...]
"""

import json
import multiprocessing as mp
import os
import signal
import sys
import time

CONTENDER = "python-multiprocessing"


def emit(workload, value=None, unit=None, outcome=None, contender=CONTENDER, **extra):
    row = {"workload": workload, "contender": contender}
    if value is not None:
        row.update(value=round(value, 6), unit=unit)
    if outcome is not None:
        row["outcome"] = outcome
    row.update(extra)
    print(json.dumps(row), flush=True)


def pin(cpu):
    try:
        os.sched_setaffinity(0, {cpu % os.cpu_count()})
    except (AttributeError, OSError):
        pass


def best_of(runs, fn):
    return min(fn() for _ in range(runs))


def uncontended_pair(acquire, release, n=300_000):
    def once():
        start = time.perf_counter_ns()
        for _ in range(n):
            acquire()
            release()
        return (time.perf_counter_ns() - start) / n

    return best_of(3, once)


def w1():
    lock = mp.Lock()
    emit("W1", uncontended_pair(lock.acquire, lock.release), "ns")


def w3():
    sem = mp.Semaphore(2)
    emit("W3", uncontended_pair(sem.acquire, sem.release), "ns")


def _contend(i, lock, counter, go, each, cpus_spread):
    pin(i if cpus_spread else 0)
    go.wait()
    for _ in range(each):
        lock.acquire()
        counter.value += 1
        lock.release()


def contended(workers, lock, total):
    counter = mp.RawValue("q", 0)
    go = mp.Event()
    each = total // workers
    procs = [mp.Process(target=_contend, args=(i, lock, counter, go, each, True)) for i in range(workers)]
    for p in procs:
        p.start()
    time.sleep(0.2)  # let every worker reach go.wait()
    start = time.perf_counter()
    go.set()
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - start
    assert counter.value == each * workers, "lost updates"
    return each * workers / elapsed / 1e6


def w2():
    emit("W2", contended(2, mp.Lock(), 400_000), "Mops/s")


def w2n():
    for n in (2, 4, 8, 16):
        emit("W2N", contended(n, mp.Lock(), 400_000), "Mops/s", workers=n)


def _sem_worker(i, sem, inside, most, go, each):
    pin(i)
    go.wait()
    for _ in range(each):
        sem.acquire()
        with inside.get_lock():
            inside.value += 1
            if inside.value > most.value:
                most.value = inside.value
            inside.value -= 1
        sem.release()


def w4():
    sem = mp.Semaphore(2)
    inside, most = mp.Value("i", 0), mp.Value("i", 0)
    go = mp.Event()
    each = 50_000
    procs = [mp.Process(target=_sem_worker, args=(i, sem, inside, most, go, each)) for i in range(4)]
    for p in procs:
        p.start()
    time.sleep(0.2)
    start = time.perf_counter()
    go.set()
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - start
    assert most.value <= 2
    emit("W4", 4 * each / elapsed / 1e6, "Mops/s")


def _pong(ping, pong, rounds, cpu):
    pin(cpu)
    for _ in range(rounds):
        ping.wait()
        ping.clear()
        pong.set()


def pingpong(same_cpu, rounds=2_000):
    ping, pong = mp.Event(), mp.Event()
    peer = mp.Process(target=_pong, args=(ping, pong, rounds, 0 if same_cpu else 1))
    peer.start()
    pin(0)
    start = time.perf_counter()
    for _ in range(rounds):
        ping.set()
        pong.wait()
        pong.clear()
    elapsed = time.perf_counter() - start
    peer.join()
    os.sched_setaffinity(0, set(range(os.cpu_count())))
    return elapsed / rounds * 1e6


def w5():
    emit("W5", pingpong(False), "us")
    emit("W5s", pingpong(True), "us")


def _answer(conn):
    conn.send(42)
    conn.close()


def start_join(ctx, n):
    start = time.perf_counter()
    for _ in range(n):
        parent, child = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_answer, args=(child,))
        p.start()
        assert parent.recv() == 42
        p.join()
    return (time.perf_counter() - start) / n * 1e6


def w6():
    emit("W6", start_join(mp.get_context("fork"), 300), "us", method="fork")
    emit("W6", start_join(mp.get_context("spawn"), 20), "us", method="spawn", contender="python-multiprocessing-spawn")


def _hold_and_die(lock, holding):
    lock.acquire()
    holding.set()
    time.sleep(60)


def w7():
    lock, holding = mp.Lock(), mp.Event()
    p = mp.Process(target=_hold_and_die, args=(lock, holding))
    p.start()
    holding.wait()
    os.kill(p.pid, signal.SIGKILL)
    p.join()
    start = time.perf_counter()
    got = lock.acquire(timeout=2)
    if got:
        emit("W7", outcome="recovered", micros=int((time.perf_counter() - start) * 1e6))
    else:
        emit("W7", outcome="deadlock")


def _sleep_forever():
    time.sleep(30)


def _parent_with_daemon(pid_value):
    d = mp.Process(target=_sleep_forever, daemon=True)
    d.start()
    pid_value.value = d.pid
    time.sleep(60)


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def w8():
    pid_value = mp.Value("i", 0)
    parent = mp.Process(target=_parent_with_daemon, args=(pid_value,))
    parent.start()
    while pid_value.value == 0:
        time.sleep(0.001)
    child = pid_value.value
    os.kill(parent.pid, signal.SIGKILL)
    parent.join()
    killed = time.perf_counter()
    while alive(child) and time.perf_counter() - killed < 1.0:
        time.sleep(0.001)
    if alive(child):
        os.kill(child, signal.SIGKILL)
        emit("W8", outcome="orphan survives")
    else:
        emit("W8", outcome="gone", micros=int((time.perf_counter() - killed) * 1e6))


MESSAGE = bytes(64)
STOP = None


def _produce(q, n, cpu, go):
    pin(cpu)
    go.wait()
    for _ in range(n):
        q.put(MESSAGE)


def _consume(q, n, cpu, go, done):
    pin(cpu)
    go.wait()
    for _ in range(n):
        q.get()
    done.set()


def w9(messages=200_000):
    """1 producer process -> 1 consumer process, 64-byte bytes, on two CPUs."""
    q, go, done = mp.Queue(), mp.Event(), mp.Event()
    procs = [mp.Process(target=_produce, args=(q, messages, 0, go)),
             mp.Process(target=_consume, args=(q, messages, 1, go, done))]
    for p in procs:
        p.start()
    time.sleep(0.2)  # let both reach go.wait()
    start = time.perf_counter()
    go.set()
    done.wait()
    elapsed = time.perf_counter() - start
    for p in procs:
        p.join()
    emit("W9", messages / elapsed / 1e6, "Mmsg/s")


def _echo(ping, pong, rounds, cpu):
    pin(cpu)
    for _ in range(rounds):
        pong.put(ping.get())


def w9lat(rounds=2_000):
    """Ping through one mp.Queue, pong through another, on two CPUs."""
    ping, pong = mp.Queue(), mp.Queue()
    peer = mp.Process(target=_echo, args=(ping, pong, rounds, 1))
    peer.start()
    pin(0)
    ping.put(MESSAGE)  # the first round trip starts the queues' feeder threads
    pong.get()
    start = time.perf_counter()
    for _ in range(rounds - 1):
        ping.put(MESSAGE)
        pong.get()
    elapsed = time.perf_counter() - start
    peer.join()
    os.sched_setaffinity(0, set(range(os.cpu_count())))
    emit("W9lat", elapsed / (rounds - 1) * 1e6, "us")


def _produce_share(q, n, go):
    go.wait()
    for _ in range(n):
        q.put(MESSAGE)
    # Exiting flushes this process's feeder thread into the pipe.


def _consume_until_stop(q, go, received, lock):
    go.wait()
    got = 0
    while q.get() is not STOP:
        got += 1
    with lock:
        received.value += got


def w9n(total=200_000):
    """N producers -> N consumers over one mp.Queue; every message once."""
    for n in (1, 2, 4, 8):
        q, go, lock = mp.Queue(), mp.Event(), mp.Lock()
        received = mp.RawValue("q", 0)
        shares = [total // n + (i < total % n) for i in range(n)]
        producers = [mp.Process(target=_produce_share, args=(q, shares[i], go)) for i in range(n)]
        consumers = [mp.Process(target=_consume_until_stop, args=(q, go, received, lock)) for _ in range(n)]
        for p in producers + consumers:
            p.start()
        time.sleep(0.2)
        start = time.perf_counter()
        go.set()
        for p in producers:
            p.join()
        # Every message is in the pipe once its producer exited: the stops
        # come after all of them, one per consumer.
        for _ in range(n):
            q.put(STOP)
        for p in consumers:
            p.join()
        elapsed = time.perf_counter() - start
        assert received.value == total, f"{received.value} of {total} messages received"
        emit("W9N", total / elapsed / 1e6, "Mmsg/s", workers=n)


def _inc(x):
    return x + 1


def w10(inputs=100_000):
    """Pool(2).map(x -> x + 1) with the automatic chunk size."""
    with mp.Pool(2) as pool:
        pool.map(_inc, range(1000))  # workers started and warm
        start = time.perf_counter()
        out = pool.map(_inc, range(inputs))
        elapsed = time.perf_counter() - start
    assert out[-1] == inputs
    emit("W10", inputs / elapsed / 1e6, "Mtasks/s")


def w10c1(inputs=20_000, rounds=3):
    """Pool(2).map(x -> x + 1, chunksize=1): one task per round trip.

    The best of `rounds` maps: on two cores this figure moved from 13k to
    40k tasks/s between single runs on two days (the pool's three threads
    and two workers fight for the CPU), and the best is the figure least
    flattering to procsync."""
    with mp.Pool(2) as pool:
        pool.map(_inc, range(1000), chunksize=1)
        best = 0.0
        for _ in range(rounds):
            start = time.perf_counter()
            out = pool.map(_inc, range(inputs), chunksize=1)
            elapsed = time.perf_counter() - start
            assert out[-1] == inputs
            best = max(best, inputs / elapsed)
    emit("W10c1", best / 1e6, "Mtasks/s")
    # concurrent.futures' pool: its map sends one task per round trip too.
    from concurrent.futures import ProcessPoolExecutor
    with ProcessPoolExecutor(2, mp_context=mp.get_context("fork")) as ex:
        list(ex.map(_inc, range(1000)))
        start = time.perf_counter()
        out = list(ex.map(_inc, range(inputs)))
        elapsed = time.perf_counter() - start
    assert out[-1] == inputs
    emit("W10c1", inputs / elapsed / 1e6, "Mtasks/s", contender="python-ProcessPoolExecutor")


_W11_TASK = 0.5
_W11_PIDS = None


def _w11_task(i):
    """Says which worker runs it, then works for half a second."""
    _W11_PIDS[i] = os.getpid()
    time.sleep(_W11_TASK)
    return i


def _w11_wait_started():
    deadline = time.perf_counter() + 10
    while 0 in list(_W11_PIDS):
        if time.perf_counter() > deadline:
            return False
        time.sleep(0.0002)
    return True


def w11():
    """4 workers run 4 tasks; one worker is SIGKILLed mid-task."""
    global _W11_PIDS
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    # Made before the pools fork their workers, which inherit it.
    _W11_PIDS = mp.Array("i", 4)
    pool = mp.Pool(4)
    result = pool.map_async(_w11_task, range(4), chunksize=1)
    if _w11_wait_started():
        os.kill(_W11_PIDS[0], signal.SIGKILL)
        try:
            result.get(timeout=5)
            outcome = "completed"
        except mp.TimeoutError:
            outcome = "hang: no result 5 s after the kill"
    else:
        outcome = "the 4 tasks never all started"
    pool.terminate()
    pool.join()
    emit("W11", outcome=outcome, contender="python-Pool")

    for i in range(4):
        _W11_PIDS[i] = 0
    with ProcessPoolExecutor(4, mp_context=mp.get_context("fork")) as ex:
        futures = [ex.submit(_w11_task, i) for i in range(4)]
        if not _w11_wait_started():
            emit("W11", outcome="the 4 tasks never all started",
                 contender="python-ProcessPoolExecutor")
            return
        os.kill(_W11_PIDS[0], signal.SIGKILL)
        killed = time.perf_counter()
        failed, first = 0, None
        for f in futures:
            try:
                f.result(timeout=10)
            except BrokenProcessPool:
                failed += 1
                first = first or time.perf_counter()
        try:
            ex.submit(_w11_task, 0).result(timeout=10)
            usable = "usable"
        except BrokenProcessPool:
            usable = "broken"
    micros = {} if first is None else {"micros": int((first - killed) * 1e6)}
    emit("W11", outcome=f"{failed} of 4 tasks failed (BrokenProcessPool), pool {usable}",
         contender="python-ProcessPoolExecutor", **micros)


def main():
    mp.set_start_method("fork")
    only = set(sys.argv[1:])
    for name, fn in [("W1", w1), ("W2", w2), ("W2N", w2n), ("W3", w3), ("W4", w4),
                     ("W5", w5), ("W6", w6), ("W7", w7), ("W8", w8),
                     ("W9", w9), ("W9lat", w9lat), ("W9N", w9n),
                     ("W10", w10), ("W10c1", w10c1), ("W11", w11)]:
        if not only or name in only:
            fn()


if __name__ == "__main__":
    main()
