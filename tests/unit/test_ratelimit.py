"""ORCA paces its EC2 calls with token buckets below the account's shared limits."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest

from orca.aws.ec2 import Ec2
from orca.aws.model import LaunchRequest
from orca.aws.ratelimit import EC2_ACCOUNT_LIMITS, Pacer, TokenBucket


class FakeClock:
    """A monotonic clock that only moves when something sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.naps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.naps.append(seconds)
            self.now += seconds


def test_full_bucket_serves_its_capacity_at_once_then_waits_for_refill() -> None:
    clock = FakeClock()
    bucket = TokenBucket(3, 2.0, clock=clock, sleep=clock.sleep)

    waits = [bucket.acquire() for _ in range(5)]

    assert waits == [0.0, 0.0, 0.0, 0.5, 0.5]
    assert clock.now == pytest.approx(1001.0)


def test_bucket_never_holds_more_than_its_capacity() -> None:
    clock = FakeClock()
    bucket = TokenBucket(2, 1.0, clock=clock, sleep=clock.sleep)
    bucket.acquire()
    bucket.acquire()

    clock.now += 3600
    taken = sum(bucket.try_acquire() for _ in range(5))

    assert taken == 2


def test_threads_together_never_take_more_tokens_than_the_bucket_holds() -> None:
    clock = FakeClock()
    bucket = TokenBucket(50, 1.0, clock=clock, sleep=clock.sleep)
    taken: list[bool] = []
    lock = threading.Lock()

    def grab() -> None:
        for _ in range(100):
            got = bucket.try_acquire()
            with lock:
                taken.append(got)

    threads = [threading.Thread(target=grab) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(taken) == 50


def test_pacer_takes_half_of_each_account_bucket_by_default() -> None:
    pacer = Pacer()

    run = pacer.bucket("RunInstances")
    terminate = pacer.bucket("TerminateInstances")
    describe = pacer.bucket("DescribeInstances")

    assert (run.capacity, run.refill_per_second) == (2, 1.0)
    assert (terminate.capacity, terminate.refill_per_second) == (50, 2.5)
    assert (describe.capacity, describe.refill_per_second) == (50, 10.0)
    assert EC2_ACCOUNT_LIMITS["RunInstances"].refill_per_second == 2.0


def test_describe_calls_share_one_bucket() -> None:
    pacer = Pacer()

    assert pacer.bucket("DescribeInstances") is pacer.bucket("DescribeAvailabilityZones")


class RecordingEc2Client:
    """Just enough of a boto3 EC2 client to see when calls are made."""

    meta = SimpleNamespace(partition="aws", region_name="us-east-1")

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.calls: list[tuple[str, float]] = []

    def run_instances(self, **params: Any) -> dict[str, Any]:
        self.calls.append(("RunInstances", self.clock()))
        return {
            "Instances": [
                {
                    "InstanceId": f"i-{len(self.calls):017x}",
                    "InstanceType": params["InstanceType"],
                    "State": {"Name": "pending"},
                    "Placement": {"AvailabilityZone": "us-east-1a"},
                }
            ]
        }


def test_third_launch_in_a_burst_waits_a_second_for_orcas_share_of_the_bucket() -> None:
    clock = FakeClock()
    client = RecordingEc2Client(clock)
    ec2 = Ec2(client, Pacer(clock=clock, sleep=clock.sleep))
    req = LaunchRequest(
        instance_type="g6e.xlarge",
        subnet_id="subnet-1",
        launch_template_id="lt-1",
        client_token="token",
        user_data="#!/bin/bash\n",
        tags={},
    )

    for _ in range(3):
        ec2.run_instance(req)

    assert [at - 1000.0 for _, at in client.calls] == [0.0, 0.0, pytest.approx(1.0)]
