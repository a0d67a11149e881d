"""The pod watch survives 410 Gone and API-server outages by listing again."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from orca.controller import PodController
from orca.kube.pods import WatchExpired
from orca.observed import Observed
from orca.workqueue import WorkQueue
from tests.unit.helpers import settings


def _pod(uid: str, version: str) -> dict[str, Any]:
    return {
        "metadata": {"uid": uid, "name": uid, "namespace": "default", "resourceVersion": version}
    }


class ScriptedPodApi:
    """An API server whose list and watch answers follow a script."""

    node_name = "orca-physics"

    def __init__(self, lists: list[Any], watches: list[Any]) -> None:
        self.lists = lists
        self.watches = watches
        self.list_calls = 0
        self.watched_from: list[str] = []
        self.done = threading.Event()

    def list(self) -> tuple[list[dict[str, Any]], str]:
        self.list_calls += 1
        answer = self.lists.pop(0) if self.lists else self.lists_done()
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[no-any-return]

    def lists_done(self) -> Any:
        self.done.set()
        time.sleep(0.05)
        return [], "999"

    def watch(self, version: str, timeout: int) -> Iterator[tuple[str, dict[str, Any]]]:
        self.watched_from.append(version)
        answer = self.watches.pop(0) if self.watches else []
        for item in answer:
            if isinstance(item, Exception):
                raise item
            yield item
        if not self.watches:
            self.done.set()
            time.sleep(0.05)


def run_watch(api: ScriptedPodApi) -> tuple[Observed, WorkQueue]:
    observed, queue = Observed(), WorkQueue(base_delay=0.01)
    controller = PodController(
        settings(),
        observed,
        queue,
        reconciler=None,
        pods=api,  # type: ignore[arg-type]
        ec2=None,
        reports=None,
        collector=None,  # type: ignore[arg-type]
    )
    thread = threading.Thread(target=controller._watch_pods, daemon=True)
    thread.start()
    assert api.done.wait(10), "the watch loop did not get through its script"
    controller._stop.set()
    thread.join(5)
    return observed, queue


def queued(queue: WorkQueue) -> set[str]:
    keys = set()
    while (key := queue.get(timeout=0)) is not None:
        keys.add(key)
        queue.done(key)
    return keys


def test_watch_resumes_from_the_last_version_it_saw() -> None:
    api = ScriptedPodApi(
        lists=[([_pod("a", "5")], "5")],
        watches=[[("MODIFIED", _pod("a", "7")), ("ADDED", _pod("b", "8"))], []],
    )

    observed, queue = run_watch(api)

    assert api.watched_from[:2] == ["5", "8"]
    assert observed.pod_uids() == {"a", "b"}
    assert queued(queue) == {"a", "b"}


def test_410_gone_relists_and_finds_what_changed_meanwhile() -> None:
    api = ScriptedPodApi(
        lists=[([_pod("a", "5")], "5"), ([_pod("b", "40")], "40")],
        watches=[[WatchExpired("too old resource version: 5 (30)")], []],
    )

    observed, queue = run_watch(api)

    assert api.list_calls >= 2
    assert api.watched_from[:2] == ["5", "40"]
    # a vanished while nobody watched: it is queued so its instance is dealt with.
    assert observed.pod_uids() == {"b"}
    assert queued(queue) == {"a", "b"}


def test_api_server_outage_is_retried_by_listing_again() -> None:
    api = ScriptedPodApi(
        lists=[ConnectionRefusedError("connection refused"), ([_pod("a", "3")], "3")],
        watches=[[]],
    )

    observed, _ = run_watch(api)

    assert api.list_calls >= 2
    assert observed.pod_uids() == {"a"}
