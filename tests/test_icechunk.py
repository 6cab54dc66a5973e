"""Icechunk 2.3 guarantees the Icechunk chapter relies on, checked under stress.

- Racing writers: threads commit to one branch for several rounds; every commit
  either lands or fails with a ConflictError, and every acknowledged commit (one
  that returned a snapshot id) is in the final history with its data readable.
- Time travel: a snapshot checked out after later commits returns exactly its bytes.
- Nothing is left behind: no lock files, the repository reopens and accepts writes,
  and the S3 server is gone after its ``with`` block.

The races run on in-memory storage and on a real local S3 server (SeaweedFS), both of
which move branches with conditional writes. Not on local-filesystem storage: Icechunk
2.3 warns that it "is not safe for concurrent commits", and this race does lose
acknowledged commits there (the chapter shows it).
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import icechunk
import numpy as np
import pytest
import zarr

from data_helpers.servers import S3Server, s3_server

icechunk.set_logs_filter("error")

WRITERS = 4
ROUNDS = 4


_prefixes = itertools.count()


def s3_repo_storage(s3: S3Server, prefix: str) -> icechunk.Storage:
    return icechunk.s3_storage(
        bucket=s3.bucket, prefix=prefix, endpoint_url=s3.endpoint, allow_http=True,
        force_path_style=True, region=s3.region, access_key_id=s3.access_key_id,
        secret_access_key=s3.secret_access_key,
    )


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        yield server
    assert not _alive(server.pid), "the S3 server outlived its with block"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def new_repo(storage: icechunk.Storage) -> icechunk.Repository:
    """A repository with one array `shared` (WRITERS x ROUNDS, one chunk per cell)
    and one array `hot` (a single chunk every writer fights over)."""
    repo = icechunk.Repository.create(storage)
    session = repo.writable_session("main")
    root = zarr.group(store=session.store)
    root.create_array("shared", shape=(WRITERS, ROUNDS), chunks=(1, 1), dtype="int32",
                      fill_value=-1)
    root.create_array("hot", shape=(8,), chunks=(8,), dtype="int32", fill_value=-1)
    session.commit("setup")
    return repo


def race(repo: icechunk.Repository, write: Callable[[icechunk.Session, int, int], None],
         on_conflict: str) -> tuple[list[tuple[str, int, int]], dict[str, int]]:
    """WRITERS threads x ROUNDS rounds; each round starts together (a barrier).

    on_conflict="rebase": rebase the session (ConflictDetector) and retry the commit;
    on_conflict="fresh": throw the session away and redo the write on a fresh one.
    Returns the acknowledged commits (snapshot id, writer, round) and outcome counts.
    """
    acked: list[tuple[str, int, int]] = []
    outcomes = {"landed": 0, "conflict": 0, "other error": 0}
    lock = threading.Lock()
    barrier = threading.Barrier(WRITERS)
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            for r in range(ROUNDS):
                barrier.wait(timeout=30)
                session = repo.writable_session("main")
                write(session, i, r)
                for _ in range(200):
                    try:
                        snapshot_id = session.commit(f"writer {i} round {r}")
                    except icechunk.ConflictError:
                        with lock:
                            outcomes["conflict"] += 1
                        if on_conflict == "rebase":
                            session.rebase(icechunk.ConflictDetector())
                        else:
                            session = repo.writable_session("main")
                            write(session, i, r)
                        continue
                    except Exception:
                        with lock:
                            outcomes["other error"] += 1
                        raise
                    with lock:
                        outcomes["landed"] += 1
                        acked.append((snapshot_id, i, r))
                    break
                else:
                    raise AssertionError(f"writer {i} round {r} never committed")
        except BaseException as err:  # surfaced in the main thread below
            errors.append(err)
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a writer thread hung"
    if errors:
        raise errors[0]
    return acked, outcomes


def read(repo: icechunk.Repository, snapshot_id: str, path: str) -> zarr.Array:
    store = repo.readonly_session(snapshot_id=snapshot_id).store
    return zarr.open_array(store, path=path, mode="r")


@pytest.fixture(params=["memory", "s3"])
def storage(request) -> icechunk.Storage:
    if request.param == "memory":
        return icechunk.in_memory_storage()
    server = request.getfixturevalue("s3")
    return s3_repo_storage(server, f"race-{next(_prefixes)}")


@pytest.mark.timeout(120)
def test_racing_writers_on_own_chunks_rebase_and_lose_nothing(storage):
    repo = new_repo(storage)

    def write(session, i, r):
        zarr.open_array(session.store, path="shared", mode="r+")[i, r] = 100 * i + r

    acked, outcomes = race(repo, write, on_conflict="rebase")

    assert outcomes["other error"] == 0
    assert outcomes["landed"] == len(acked) == WRITERS * ROUNDS
    history = [s.id for s in repo.ancestry(branch="main")]
    assert len(history) == len(set(history)) == WRITERS * ROUNDS + 2  # + setup + init
    for snapshot_id, i, r in acked:
        assert snapshot_id in history, f"acknowledged commit {i}/{r} is lost"
        assert read(repo, snapshot_id, "shared")[i, r] == 100 * i + r
    final = read(repo, history[0], "shared")[:]
    expected = 100 * np.arange(WRITERS)[:, None] + np.arange(ROUNDS)[None, :]
    np.testing.assert_array_equal(final, expected)


@pytest.mark.timeout(120)
def test_racing_writers_on_one_chunk_conflict_then_redo_and_lose_nothing(storage):
    repo = new_repo(storage)

    def write(session, i, r):
        # every writer rewrites the same chunk and the root group's attributes
        zarr.open_array(session.store, path="hot", mode="r+")[:] = 100 * i + r
        zarr.open_group(session.store, mode="r+").attrs[f"writer{i}"] = r

    acked, outcomes = race(repo, write, on_conflict="fresh")

    assert outcomes["other error"] == 0
    assert outcomes["landed"] == len(acked) == WRITERS * ROUNDS
    assert outcomes["conflict"] > 0, "the race produced no conflict: it tested nothing"
    history = [s.id for s in repo.ancestry(branch="main")]
    assert len(history) == WRITERS * ROUNDS + 2
    for snapshot_id, i, r in acked:
        assert snapshot_id in history, f"acknowledged commit {i}/{r} is lost"
        # that snapshot holds exactly this writer's values, not a mix
        np.testing.assert_array_equal(read(repo, snapshot_id, "hot")[:], 100 * i + r)
        attrs = zarr.open_group(repo.readonly_session(snapshot_id=snapshot_id).store,
                                mode="r").attrs
        assert attrs[f"writer{i}"] == r
    final_attrs = zarr.open_group(repo.readonly_session(branch="main").store,
                                  mode="r").attrs.asdict()
    assert final_attrs == {f"writer{i}": ROUNDS - 1 for i in range(WRITERS)}


def test_checkout_of_old_snapshot_returns_exactly_the_old_bytes(tmp_path):
    path = str(tmp_path / "r")
    repo = icechunk.Repository.create(icechunk.local_filesystem_storage(path))
    rng = np.random.default_rng(7)
    original = rng.integers(0, 2**16, size=(40, 50), dtype="uint16")
    session = repo.writable_session("main")
    root = zarr.group(store=session.store, attributes={"version": 1})
    arr = root.create_array("img", data=original, chunks=(16, 16))
    arr.attrs["units"] = "counts"
    old = session.commit("v1")

    # later commits change values, shape, attributes and even the path
    session = repo.writable_session("main")
    arr = zarr.open_array(session.store, path="img", mode="r+")
    arr[:] = 0
    arr.append(np.ones((8, 50), "uint16"), axis=0)
    arr.attrs["units"] = "photons"
    zarr.open_group(session.store, mode="r+").attrs["version"] = 2
    session.commit("v2")
    session = repo.writable_session("main")
    zarr.open_group(session.store, mode="r+").create_group("moved")
    session.commit("add group")
    rearrange = repo.rearrange_session("main")
    rearrange.move("/img", "/moved/img")
    rearrange.commit("move")

    reopened = icechunk.Repository.open(icechunk.local_filesystem_storage(path))
    checkout = reopened.readonly_session(snapshot_id=old)
    group = zarr.open_group(checkout.store, mode="r")
    back = group["img"]
    assert back.shape == original.shape and back.dtype == original.dtype
    assert back[:].tobytes() == original.tobytes()
    assert back.attrs.asdict() == {"units": "counts"}
    assert group.attrs.asdict() == {"version": 1}
    now = reopened.readonly_session(branch="main")
    assert zarr.open_array(now.store, path="moved/img", mode="r").shape == (48, 50)
    with pytest.raises(icechunk.IcechunkError):  # the past is read-only
        zarr.open_array(checkout.store, path="img")[0, 0] = 1


def test_no_lock_left_behind_after_commits_and_an_abandoned_session(tmp_path):
    path = tmp_path / "repo"
    repo = icechunk.Repository.create(icechunk.local_filesystem_storage(str(path)))
    session = repo.writable_session("main")
    zarr.group(store=session.store).create_array("a", shape=(4,), dtype="u1")
    session.commit("one")
    abandoned = repo.writable_session("main")  # written to, never committed
    zarr.open_array(abandoned.store, path="a", mode="r+")[:] = 1
    del abandoned, session, repo

    files = [p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()]
    assert not [f for f in files if "lock" in f.lower()], files
    # a brand-new Repository object can write and commit straight away
    again = icechunk.Repository.open(icechunk.local_filesystem_storage(str(path)))
    session = again.writable_session("main")
    zarr.open_array(session.store, path="a", mode="r+")[:] = 2
    session.commit("two")
    assert [s.message for s in again.ancestry(branch="main")][:2] == ["two", "one"]
    now = again.readonly_session(branch="main").store
    np.testing.assert_array_equal(zarr.open_array(now, path="a", mode="r")[:], 2)


def test_s3_repository_survives_its_server_and_nothing_is_left_running(tmp_path):
    data_dir = tmp_path / "seaweed"
    with s3_server(data_dir=data_dir) as server:
        repo = icechunk.Repository.create(s3_repo_storage(server, "cells"))
        session = repo.writable_session("main")
        # chunks big enough (2 KiB) to be stored as objects, not inlined in the manifest
        data = np.random.default_rng(3).integers(0, 2**16, 4096, dtype="uint16")
        root = zarr.group(store=session.store)
        root.create_array("a", data=data, chunks=(1024,))
        first = session.commit("one")
        pid = server.pid
    assert not _alive(pid), "the S3 server process is still running"

    # the same data directory, a new server (new port): the repository is intact
    with s3_server(data_dir=data_dir) as server:
        repo = icechunk.Repository.open(s3_repo_storage(server, "cells"))
        assert [s.id for s in repo.ancestry(branch="main")][0] == first
        back = zarr.open_array(repo.readonly_session(snapshot_id=first).store, path="a",
                               mode="r")
        np.testing.assert_array_equal(back[:], data)
        pid = server.pid
    assert not _alive(pid)


# ----------------------------------------------------------------- the chapter's new sections


def test_forks_merged_give_one_commit_with_every_workers_chunks(tmp_path):
    import pickle
    from concurrent.futures import ThreadPoolExecutor

    repo = icechunk.Repository.create(icechunk.local_filesystem_storage(str(tmp_path / "r")))
    with repo.transaction("main", message="empty") as store:
        zarr.create_array(store, name="a", shape=(4, 64, 64), chunks=(4, 32, 32),
                          dtype="int32", fill_value=-1)
    coordinator = repo.writable_session("main")

    def work(fork, task):
        y, x = divmod(task, 2)
        zarr.open_array(fork.store, path="a", mode="r+")[
            :, 32 * y:32 * y + 32, 32 * x:32 * x + 32] = task
        return fork

    forks = [pickle.loads(pickle.dumps(coordinator.fork())) for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        coordinator.merge(*pool.map(work, forks, range(4)))
    coordinator.commit("job")
    assert [s.message for s in repo.ancestry(branch="main")][:2] == ["job", "empty"]
    a = zarr.open_array(repo.readonly_session(branch="main").store, path="a")[:]
    expected = np.block([[np.zeros((4, 32, 32)), np.ones((4, 32, 32))],
                         [np.full((4, 32, 32), 2), np.full((4, 32, 32), 3)]])
    np.testing.assert_array_equal(a, expected)


def test_transaction_commits_on_exit_and_not_on_error_and_amend_replaces_the_tip(tmp_path):
    repo = icechunk.Repository.create(icechunk.local_filesystem_storage(str(tmp_path / "r")))
    with repo.transaction("main", message="one") as store:
        zarr.create_group(store, attributes={"n": 1})
    with pytest.raises(RuntimeError), repo.transaction("main", message="two") as store:
        zarr.open_group(store, mode="r+").attrs["n"] = 2
        raise RuntimeError("abandon")
    assert [s.message for s in repo.ancestry(branch="main")] == ["one", "Repository initialized"]
    session = repo.writable_session("main")
    zarr.open_group(session.store, mode="r+").attrs["n"] = 3
    session.amend("one, amended")
    assert [s.message for s in repo.ancestry(branch="main")] == [
        "one, amended", "Repository initialized"]
    g = zarr.open_group(repo.readonly_session(branch="main").store, mode="r")
    assert g.attrs["n"] == 3


def test_ome_zarr_in_a_repository_validates_and_publishes_byte_exact(tmp_path):
    import datetime

    import tensorstore as ts
    from ome_zarr_models.v05.image import Image

    repo = icechunk.Repository.create(icechunk.local_filesystem_storage(str(tmp_path / "r")))
    data = np.arange(2 * 4 * 32 * 32, dtype="uint16").reshape(2, 4, 32, 32)
    axes = [{"name": "c", "type": "channel"}] + [
        {"name": d, "type": "space", "unit": "micrometer"} for d in "zyx"]
    ms = {"axes": axes, "datasets": [{"path": "0", "coordinateTransformations": [
        {"type": "scale", "scale": [1, 1, 1, 1]}]}]}
    with repo.transaction("main", message="image") as store:
        g = zarr.create_group(store, attributes={"ome": {"version": "0.5",
                                                         "multiscales": [ms]}})
        g.create_array("0", data=data, chunks=(1, 4, 16, 16),
                       dimension_names=("c", "z", "y", "x"))
    ro = repo.readonly_session(branch="main")
    Image.from_zarr(zarr.open_group(ro.store, mode="r"))
    with pytest.raises(zarr.errors.GroupNotFoundError):
        zarr.open_group(str(tmp_path / "r"), mode="r")

    async def copy(src, dst):
        proto = zarr.core.buffer.default_buffer_prototype()
        async for k in src.list():
            await dst.set(k, await src.get(k, prototype=proto))

    zarr.core.sync.sync(copy(ro.store, zarr.storage.LocalStore(tmp_path / "pub.ome.zarr")))
    Image.from_zarr(zarr.open_group(tmp_path / "pub.ome.zarr", mode="r"))
    arr = ts.open({"driver": "zarr3", "kvstore": {"driver": "file",
                                                  "path": str(tmp_path / "pub.ome.zarr/0")}})
    np.testing.assert_array_equal(arr.result().read().result(), data)
    # rewrite twice, expire and collect: bytes go down, the tip still reads
    for k in (2, 3):
        with repo.transaction("main", message=f"x{k}") as store:
            zarr.open_array(store, path="0", mode="r+")[:] = data // k
    size = lambda: sum(p.stat().st_size for p in (tmp_path / "r").rglob("*") if p.is_file())  # noqa: E731
    before = size()
    now = datetime.datetime.now(datetime.UTC)
    assert len(repo.expire_snapshots(now)) >= 2
    summary = repo.garbage_collect(now)
    assert summary.bytes_deleted > 0 and size() < before
    tip = zarr.open_array(repo.readonly_session(branch="main").store, path="0")[:]
    np.testing.assert_array_equal(tip, data // 3)
