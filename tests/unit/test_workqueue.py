"""The work queue: one worker per key, deduplicated, retried with backoff."""

from __future__ import annotations

from orca.workqueue import WorkQueue


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_key_added_twice_is_handed_out_once() -> None:
    queue = WorkQueue()
    queue.add("a")
    queue.add("a")

    assert queue.get(timeout=0) == "a"
    assert queue.get(timeout=0) is None


def test_a_key_added_while_processing_comes_back_after_done() -> None:
    queue = WorkQueue()
    queue.add("a")
    key = queue.get(timeout=0)
    queue.add("a")

    assert queue.get(timeout=0) is None  # never two workers on one key
    queue.done(key)  # type: ignore[arg-type]
    assert queue.get(timeout=0) == "a"


def test_retries_back_off_exponentially_until_forgotten() -> None:
    clock = Clock()
    queue = WorkQueue(base_delay=1.0, max_delay=8.0, clock=clock)

    delays = []
    for _ in range(5):
        delays.append(queue.retry("a"))
    queue.forget("a")

    for n, delay in enumerate(delays):
        expected = min(8.0, 2.0**n)
        assert expected * 0.8 <= delay <= expected * 1.2
    assert queue.failures("a") == 0


def test_a_delayed_key_is_not_ready_before_its_time() -> None:
    clock = Clock()
    queue = WorkQueue(clock=clock)
    queue.add_after("a", 10.0)

    assert queue.get(timeout=0) is None
    clock.now = 10.0
    assert queue.get(timeout=0) == "a"


def test_shutdown_releases_waiting_workers() -> None:
    queue = WorkQueue()
    queue.shutdown()

    assert queue.get() is None


def test_a_deferred_key_says_so_until_its_time_though_it_is_queued_meanwhile() -> None:
    clock = Clock()
    queue = WorkQueue(clock=clock)

    queue.defer("waiting", 60)
    queue.add("waiting")  # its own status write brings it back at once
    early = (queue.get(timeout=0), queue.deferred("waiting"))
    queue.done("waiting")
    clock.now = 60.0
    due = (queue.get(timeout=0), queue.deferred("waiting"))

    assert early == ("waiting", True)
    assert due == ("waiting", False)
    assert not queue.deferred("never-deferred")
