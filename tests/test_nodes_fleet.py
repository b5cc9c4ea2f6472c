"""A real fleet: `tooldeck --headless` nodes, each with its own data dir and port, on one real
PostgreSQL database. Placement, fair spreading of `any` servers, failover after `kill -9`, and
a paused node that never runs a server a second time."""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.daemon_helpers import Daemon, launch, wait_for
from tests.fleet_helpers import (
    CopyWatch,
    node_env,
    node_of,
    nodes_seen_by,
    running_copies,
    runs_only_on,
    servers_of,
    start_node,
    tagged_server,
)

# Lease 5 s: a lost node's servers are free after at most 5 s, started again within a second.
MOVE_TIMEOUT_S = 45.0


@pytest.fixture
def fleet_url(new_pg_database: Callable[..., str]) -> str:
    return new_pg_database()


@pytest.fixture
def started() -> Iterator[list[Daemon]]:
    daemons: list[Daemon] = []
    yield daemons
    for daemon in daemons:
        if daemon.process.poll() is None:
            daemon.process.send_signal(signal.SIGCONT)
            daemon.stop()


def fleet_of(root: Path, url: str, names: list[str], started: list[Daemon]) -> dict[str, Daemon]:
    nodes = {}
    for name in names:
        nodes[name] = start_node(root, url, name)
        started.append(nodes[name])
    first = nodes[names[0]]
    wait_for(
        lambda: (
            all(entry["alive"] for entry in nodes_seen_by(first).values())
            and set(nodes_seen_by(first)) == set(names)
        )
    )
    return nodes


def add(node: Daemon, server: dict[str, object]) -> None:
    with node.client() as client:
        answer = client.post("/api/v1/toolservers/servers", json=server)
        assert answer.status_code == 201, answer.text


def settled(node: Daemon, names: list[str]) -> dict[str, dict[str, object]] | None:
    """The servers as `node` sees them once every one of `names` runs on some node."""
    servers = servers_of(node)
    if all(servers[name]["status"] == "running" and servers[name]["node"] for name in names):
        return servers
    return None


def test_placement_spreads_and_failover_moves_after_kill(
    tmp_path: Path, fleet_url: str, started: list[Daemon]
) -> None:
    nodes = fleet_of(tmp_path, fleet_url, ["alpha", "beta", "gamma"], started)
    alpha = nodes["alpha"]
    pinned = [f"pinned-{name}" for name in nodes]
    floating = [f"floating-{index}" for index in range(6)]
    for name in nodes:
        add(alpha, tagged_server(f"pinned-{name}", name))
    for name in floating:
        add(alpha, tagged_server(name, "any"))

    servers = wait_for(lambda: settled(alpha, pinned + floating), timeout_s=MOVE_TIMEOUT_S)
    # Each pinned server runs on its node, as the API says and as its process's parent shows.
    copies = running_copies()
    for name in nodes:
        assert servers[f"pinned-{name}"]["node"] == name
        assert [node_of(p, nodes) for p in copies[f"pinned-{name}"]] == [name]
    # The `any` servers spread fairly: ceil(6 / 3) = 2 each, and each runs where its lease is.
    spread = Counter(servers[name]["node"] for name in floating)
    assert spread == {"alpha": 2, "beta": 2, "gamma": 2}
    for name in floating:
        assert [node_of(p, nodes) for p in copies[name]] == [servers[name]["node"]]
    listed = nodes_seen_by(nodes["beta"])
    assert {name: entry["servers"] for name, entry in listed.items()} == {
        "alpha": 3,
        "beta": 3,
        "gamma": 3,
    }
    assert [name for name, entry in listed.items() if entry["this_node"]] == ["beta"]
    assert listed["gamma"]["advertise_url"] == nodes["gamma"].url

    # A placement changed through one node's API moves the server between two others.
    with nodes["gamma"].client() as client:
        answer = client.put(
            f"/api/v1/toolservers/servers/{servers['pinned-alpha']['id']}",
            json={"placement": "beta"},
        )
        assert answer.status_code == 200, answer.text
    wait_for(
        lambda: (
            [node_of(p, nodes) for p in running_copies()["pinned-alpha"]] == ["beta"]
            and servers_of(alpha)["pinned-alpha"]["status"] == "running"
        ),
        timeout_s=MOVE_TIMEOUT_S,
    )
    assert servers_of(alpha)["pinned-alpha"]["node"] == "beta"

    lost = sorted(name for name in floating if servers[name]["node"] == "gamma")
    nodes["gamma"].kill()
    moved = wait_for(
        lambda: (
            (seen := settled(alpha, floating))
            and all(seen[name]["node"] in ("alpha", "beta") for name in lost)
            and seen
        ),
        timeout_s=MOVE_TIMEOUT_S,
    )
    for name in lost:
        # The API says it runs on its new node once that node started it: its process is there.
        assert wait_for(lambda name=name: runs_only_on(name, moved[name]["node"], nodes))
    copies = running_copies()
    # Its pinned server is not started elsewhere: shown stopped, its node down.
    gone = servers_of(alpha)["pinned-gamma"]
    assert gone["node"] is None and gone["status"] == "stopped"
    assert gone["unplaced_reason"] == "node gamma is down"
    assert "pinned-gamma" not in copies
    assert wait_for(lambda: not nodes_seen_by(alpha)["gamma"]["alive"])


def test_a_paused_node_never_runs_a_server_twice(
    tmp_path: Path, fleet_url: str, started: list[Daemon]
) -> None:
    nodes = fleet_of(tmp_path, fleet_url, ["north", "south"], started)
    north, south = nodes["north"], nodes["south"]
    floating = [f"floating-{index}" for index in range(4)]
    for name in floating:
        add(north, tagged_server(name, "any"))
    servers = wait_for(lambda: settled(south, floating), timeout_s=MOVE_TIMEOUT_S)
    held_by_north = [name for name in floating if servers[name]["node"] == "north"]
    assert len(held_by_north) == 2

    with CopyWatch(nodes) as watch:
        wait_for(lambda: all(watch.ran_on[name] == {"north"} for name in held_by_north))
        north.process.send_signal(signal.SIGSTOP)
        wait_for(
            lambda: (
                (seen := settled(south, floating))
                and all(seen[name]["node"] == "south" for name in floating)
            ),
            timeout_s=MOVE_TIMEOUT_S,
        )
        north.process.send_signal(signal.SIGCONT)
        # Resumed, north sees its leases lapsed, stops what it lost and claims nothing back:
        # south holds the fair share of a fleet where north was down.
        wait_for(lambda: nodes_seen_by(north)["north"]["alive"], timeout_s=MOVE_TIMEOUT_S)
        wait_for(lambda: nodes_seen_by(north)["north"]["servers"] == 0)
        final = wait_for(lambda: settled(north, floating))
        samples_at_end = watch.samples
        wait_for(lambda: watch.samples > samples_at_end + 5)

    assert watch.samples > 10
    assert dict(watch.most) == {name: 1 for name in floating}
    for name in held_by_north:
        assert watch.ran_on[name] == {"north", "south"}
    assert all(final[name]["node"] == "south" for name in floating)
    for name in floating:
        assert wait_for(lambda name=name: runs_only_on(name, "south", nodes))


def test_a_second_node_of_the_same_name_refuses_to_start(
    tmp_path: Path, fleet_url: str, started: list[Daemon]
) -> None:
    started.append(start_node(tmp_path, fleet_url, "twin"))
    data_dir = tmp_path / "twin-again"
    process, stderr_path = launch(
        data_dir, "--port", "0", env=node_env(data_dir, fleet_url, "twin")
    )
    assert process.wait(timeout=60) == 1
    assert "a node named 'twin' is running on this database" in stderr_path.read_text()
