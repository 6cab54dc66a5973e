"""The image catalogue: a real SQLite file plus an object store holding OME-Zarr 0.5.

Every test gets its own SQLite file in tmp_path and its own prefix of the bucket, so
"nothing left behind" can be checked by listing that prefix.
"""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import UTC, datetime

import dask.array as da
import numpy as np
import pytest
import xarray as xr
import zarr
from zarr.storage import WrapperStore

import pandas as pd

from data_helpers.catalogue import (
    ROI,
    Catalogue,
    CatalogueBusyError,
    CatalogueWarning,
    DeleteIncompleteError,
    ImageRecord,
    to_canonical,
)
from data_helpers.measure import CountingStore

INJECTION = "x'); DROP TABLE images; --"


@pytest.fixture(scope="module")
def bucket():
    """A factory ``prefix -> obstore S3Store`` on one real local S3 bucket (SeaweedFS),
    started once for the whole module."""
    from data_helpers.servers import s3_server

    with s3_server() as s3:
        yield s3.obstore_store


@pytest.fixture
def cat(bucket, tmp_path, request):
    test_root = request.node.name.replace("[", "-").replace("]", "")

    def objects(prefix: str):
        return bucket(f"{test_root}/{prefix}" if prefix else test_root)

    with Catalogue(tmp_path / "catalogue.sqlite", objects) as c:
        yield c


def volume(shape=(6, 40, 50), seed=0, dtype="uint16") -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 4000, size=shape).astype(dtype)


def zyx(values: np.ndarray, **kw) -> xr.DataArray:
    return xr.DataArray(values, dims=("z", "y", "x"), **kw)


def rows(cat: Catalogue, table: str) -> int:
    return cat.connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


# ----------------------------------------------------------------- round trip


def test_round_trip_values_fields_and_ome_metadata(cat):
    from ome_zarr_models.v05.image import Image

    vol = volume()
    coords = {"z": np.arange(6) * 0.5, "y": np.arange(40) * 0.2, "x": np.arange(50) * 0.2}
    before = datetime.now(UTC).replace(microsecond=0)
    rec = cat.upload(zyx(vol, coords=coords), name="cells", metadata={"stain": "DAPI",
                                                                       "plate": 3})
    assert isinstance(rec, ImageRecord)
    again = cat.get("cells")
    assert again == rec
    assert rec.dims == ("z", "y", "x")
    assert rec.shape == (6, 40, 50)
    assert rec.dtype == "uint16" and rec.nbytes == vol.nbytes
    assert rec.scale == pytest.approx({"z": 0.5, "y": 0.2, "x": 0.2})
    assert rec.metadata == {"plate": "3", "stain": "DAPI"}
    assert before <= rec.created_at <= datetime.now(UTC)
    assert rec.location.startswith("images/")
    assert rec.url.endswith(rec.location + "/image.ome.zarr")

    lazy = rec.data
    assert isinstance(lazy, da.Array) and lazy.dtype == np.uint16
    np.testing.assert_array_equal(lazy.compute(), vol)
    as_xr = rec.to_xarray()
    np.testing.assert_allclose(as_xr["z"].values, coords["z"])
    np.testing.assert_array_equal(as_xr.values, vol)

    group = zarr.open_group(rec.zarr_store(), mode="r", zarr_format=3)
    ome = Image.from_zarr(group)  # validates against OME-Zarr 0.5
    ms = ome.attributes.ome.multiscales[0]
    assert [a.name for a in ms.axes] == ["z", "y", "x"]
    assert ms.name == "cells"
    assert ms.datasets[0].coordinateTransformations[0].scale == pytest.approx(
        [0.5, 0.2, 0.2]
    )
    assert group["0"].compressors, "pixels must be compressed"


def test_dims_are_transposed_to_ome_order_and_none_is_invented():
    a = xr.DataArray(np.arange(24).reshape(2, 3, 4), dims=("x", "c", "y"))
    out = to_canonical(a)
    assert out.dims == ("c", "y", "x") and out.shape == (3, 4, 2)
    # value at x=1, c=2, y=3 lands at [c=2, y=3, x=1]
    assert out.values[2, 3, 1] == a.values[1, 2, 3]
    with pytest.raises(ValueError, match="needs at least the dims 'y' and 'x'"):
        to_canonical(xr.DataArray(np.zeros(3), dims=("x",)))


def test_dask_backed_input_and_explicit_scale_and_chunks(cat):
    vol = volume((4, 30, 30), seed=1)
    lazy = zyx(da.from_array(vol, chunks=(3, 7, 11)))
    rec = cat.upload(lazy, name="lazy", scale={"z": 2.0}, chunks=(2, 16, 16))
    assert rec.scale["z"] == 2.0 and rec.scale["x"] == 1.0
    arr = zarr.open_array(rec.zarr_store(), path="0", mode="r")
    assert arr.chunks == (2, 16, 16)
    np.testing.assert_array_equal(arr[:], vol)


# ----------------------------------------------------------------- SQL injection


def test_injection_in_name_and_metadata_is_stored_as_text(cat):
    cat.upload(zyx(volume((1, 4, 4))), name="innocent")
    rec = cat.upload(zyx(volume((1, 4, 4))), name=INJECTION, metadata={"note": INJECTION,
                                                                        INJECTION: "k"})
    assert rows(cat, "images") == 2
    assert cat.get(INJECTION).metadata == {"note": INJECTION, INJECTION: "k"}
    assert [r.id for r in cat.find(name=INJECTION)] == [rec.id]
    assert [r.id for r in cat.find(metadata={"note": INJECTION})] == [rec.id]
    assert cat.find(metadata={"note": "x' OR '1'='1"}) == []
    rec.name = INJECTION + " renamed"
    rec.save()
    tables = {r[0] for r in cat.connection.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"images", "metadata"} <= tables
    assert cat.get("innocent").name == "innocent"


def test_query_is_read_only(cat):
    cat.upload(zyx(volume((1, 4, 4))), name="a")
    with pytest.raises(ValueError, match="read-only"):
        cat.query("DROP TABLE images")
    assert rows(cat, "images") == 1
    assert cat.query("SELECT name FROM images WHERE name = ?", ("a",))["name"].tolist() == [
        "a"
    ]


# ----------------------------------------------------------------- failures


class FailAfter(WrapperStore):
    """Let ``n`` chunk writes through, then raise on the next one."""

    def __init__(self, store, n, _state=None):
        super().__init__(store)
        self.state = _state if _state is not None else {"left": n, "written": []}

    def _with_store(self, store):
        return type(self)(store, 0, self.state)

    async def set(self, key, value):
        if "/c/" in f"/{key}":
            if self.state["left"] == 0:
                raise OSError(f"simulated network failure writing {key}")
            self.state["left"] -= 1
            self.state["written"].append(key)
        await self._store.set(key, value)


@pytest.mark.parametrize("lazy", [False, True], ids=["numpy", "dask"])
def test_upload_failing_half_way_leaves_no_row_and_no_objects(cat, monkeypatch, lazy):
    keep = cat.upload(zyx(volume((2, 8, 8))), name="keep", metadata={"a": "1"})
    keys_before = cat.keys()
    state = {}
    real = Catalogue.zarr_store

    def failing(self, location, read_only=True):
        store = FailAfter(real(self, location, read_only), 3)
        state.update(store.state and {"s": store.state})
        return store

    monkeypatch.setattr(Catalogue, "zarr_store", failing)
    vol = volume((8, 32, 32))
    data = zyx(da.from_array(vol, chunks=(1, 32, 32)) if lazy else vol)
    with pytest.raises(OSError, match="simulated network failure"):
        cat.upload(data, name="broken", metadata={"stain": "DAPI"}, chunks=(1, 32, 32))
    assert len(state["s"]["written"]) == 3, "the failure must come after some chunks"
    monkeypatch.undo()

    assert rows(cat, "images") == 1 and rows(cat, "metadata") == 1
    assert cat.keys() == keys_before
    assert cat.orphans() == []
    with pytest.raises(KeyError):
        cat.get("broken")
    # the catalogue still works, and the name is free again
    np.testing.assert_array_equal(cat.get("keep").data.compute(), volume((2, 8, 8)))
    assert cat.upload(zyx(vol), name="broken").name == "broken"
    assert keep.id != cat.get("broken").id


def test_failure_in_the_final_transaction_removes_row_and_objects(cat, monkeypatch):
    """The zarr.json and the 'ready' state come last: if they fail, everything goes."""
    cat.upload(zyx(volume((1, 4, 4))), name="taken")
    keys = cat.keys()

    def broken(*args, **kwargs):
        raise OSError("simulated failure writing zarr.json")

    monkeypatch.setattr(Catalogue, "_put_root", broken)
    with pytest.raises(OSError, match="zarr.json"):
        cat.upload(zyx(volume((2, 8, 8))), name="late", rois=[ROI("point", [(1, 1)])],
                   tables={"t": pd.DataFrame({"a": [1]})}, datasets=["d"])
    monkeypatch.undo()
    assert rows(cat, "images") == 1 and rows(cat, "rois") == 0 and rows(cat, "tables") == 0
    assert cat.keys() == keys and cat.orphans() == []


# ----------------------------------------------------------------- delete


def test_delete_leaves_nothing_behind(cat):
    other = cat.upload(zyx(volume((2, 8, 8), seed=2)), name="other", metadata={"k": "v"})
    rec = cat.upload(zyx(volume((4, 40, 40))), name="doomed",
                     metadata={"stain": "DAPI", "k": "v"}, chunks=(1, 20, 20))
    n_keys = len(cat.keys(rec.location + "/"))
    assert n_keys == 2 + 4 * 4  # two zarr.json + 16 chunks
    assert cat.delete("doomed") == n_keys
    assert cat.keys(rec.location + "/") == []
    assert cat.connection.execute(
        "SELECT count(*) FROM metadata WHERE image_id = ?", (rec.id,)).fetchone()[0] == 0
    with pytest.raises(KeyError, match="No image"):
        cat.get("doomed")
    assert cat.orphans() == []
    # the other image is untouched
    assert cat.get("other").metadata == {"k": "v"}
    np.testing.assert_array_equal(other.data.compute(), volume((2, 8, 8), seed=2))
    with pytest.raises(KeyError):
        cat.delete(rec)


def test_orphans_finds_objects_without_a_row(cat):
    import obstore

    obstore.put(cat.object_store(""), "images/crashed/image.ome.zarr/zarr.json", b"{}")
    cat.upload(zyx(volume((1, 4, 4))), name="ok")
    assert cat.orphans() == ["images/crashed"]


# ----------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("data", "error", "fix"),
    [
        (np.zeros((4, 4)), TypeError, r"xr\.DataArray\(array, dims="),
        (xr.DataArray(np.zeros((4, 4)), dims=("row", "col")), ValueError, "rename"),
        (xr.DataArray(np.array([["a"]]), dims=("y", "x")), ValueError, "astype"),
        (xr.DataArray(np.zeros((2, 2), bool), dims=("y", "x")), ValueError, "astype"),
        (xr.DataArray(np.zeros((0, 4)), dims=("y", "x")), ValueError, "empty"),
    ],
    ids=["numpy", "unknown-dims", "strings", "bool", "empty"],
)
def test_bad_input_is_refused_with_the_fix(cat, data, error, fix):
    with pytest.raises(error, match=fix):
        cat.upload(data, name="bad")
    assert rows(cat, "images") == 0 and cat.keys() == []


def test_duplicate_name_is_refused_and_writes_nothing(cat):
    cat.upload(zyx(volume((1, 4, 4))), name="dup")
    keys = cat.keys()
    with pytest.raises(ValueError, match="already exists and names are unique"):
        cat.upload(zyx(volume((1, 4, 4))), name="dup")
    assert cat.keys() == keys and rows(cat, "images") == 1


@pytest.mark.parametrize(
    ("kwargs", "fix"),
    [
        ({"name": ""}, "non-empty name"),
        ({"name": "m", "metadata": {"list": [1, 2]}}, "json.dumps"),
        ({"name": "s", "scale": {"q": 1.0}}, "scale=\\{'z': 0.5"),
        ({"name": "s", "scale": {"z": -1}}, "positive number"),
        ({"name": "s", "scale": {"z": 1}, "unit": "micron"}, "'micrometer'"),
        ({"name": "c", "chunks": (1, 1, 1, 4)}, "3 positive ints"),
        ({"name": "c", "chunks": (1.5, 4, 4)}, "3 positive ints"),
        ({"name": "c", "chunks": {"t": 1}}, "does not have"),
        ({"name": "l", "levels": 0}, "positive int or 'auto'"),
        ({"name": "n", "channel_names": ["a"]}, "needs a 'c' axis"),
        ({"name": "d", "datasets": "screen"}, "list of names"),
        ({"name": "r", "rois": [ROI("circle", [(1, 1)])]}, "kind must be one of"),
        ({"name": "r", "rois": [ROI("point", [(1, 1)], t=0)]}, "no 't' axis"),
        ({"name": "r", "rois": [ROI("point", [(99, 1)])]}, "outside the image"),
        ({"name": "r", "rois": [ROI("mask", mask="nuclei", mask_value=1)]}, "label images"),
        ({"name": "p", "derived_from": [np.int64(999)], "step": "x"}, "No image with id 999"),
        ({"name": "t", "tables": {"t": [1, 2]}}, "pandas DataFrame"),
    ],
    ids=["empty-name", "metadata-list", "scale-key", "scale-negative", "unit",
         "chunks-len", "chunks-float", "chunks-dim", "levels", "channels-no-c",
         "datasets-str", "roi-kind", "roi-axis", "roi-outside", "roi-mask",
         "derived-missing", "table-type"],
)
def test_bad_arguments_are_refused_with_the_fix(cat, kwargs, fix):
    with pytest.raises((ValueError, TypeError, KeyError), match=fix):
        cat.upload(zyx(volume((1, 4, 4))), **kwargs)
    assert rows(cat, "images") == 0 and cat.keys() == []


def test_uneven_coordinates_need_an_explicit_scale(cat):
    data = zyx(volume((3, 4, 4)), coords={"z": [0.0, 1.0, 3.0]})
    with pytest.raises(ValueError, match="scale="):
        cat.upload(data, name="uneven")
    assert cat.upload(data, name="uneven", scale={"z": 1.5}).scale["z"] == 1.5


def test_catalogue_needs_a_store_factory(tmp_path):
    from obstore.store import MemoryStore

    with pytest.raises(TypeError, match="factory"):
        Catalogue(tmp_path / "c.sqlite", MemoryStore())


# ----------------------------------------------------------------- local vs stored


def test_changes_reach_the_database_only_on_save(cat):
    rec = cat.upload(zyx(volume((1, 4, 4))), name="draft", metadata={"status": "new"})
    rec.name = "final"
    rec.metadata["status"] = "reviewed"
    rec.metadata["by"] = "ana"
    stored = cat.query("SELECT name FROM images WHERE id = ?", (rec.id,))
    assert stored["name"].tolist() == ["draft"]
    assert cat.get(rec.id).metadata == {"status": "new"}
    saved = rec.save()
    assert saved.name == "final" and saved.metadata == {"by": "ana", "status": "reviewed"}
    assert cat.find(metadata={"status": "new"}) == []
    del rec.metadata["by"]
    assert cat.update(rec).metadata == {"status": "reviewed"}


def test_save_refuses_renaming_onto_another_name_and_immutable_fields(cat):
    cat.upload(zyx(volume((1, 4, 4))), name="one")
    two = cat.upload(zyx(volume((1, 4, 4))), name="two")
    two.name = "one"
    with pytest.raises(ValueError, match="Choose another name"):
        two.save()
    assert cat.get(two.id).name == "two"
    two = cat.get("two")
    two.shape = (1, 8, 8)
    with pytest.raises(ValueError, match="immutable"):
        two.save()


# ----------------------------------------------------------------- finding


def test_find_by_name_metadata_and_size(cat):
    small = cat.upload(zyx(volume((1, 8, 8))), name="cells-small", metadata={"stain": "DAPI"})
    big = cat.upload(zyx(volume((4, 32, 32))), name="cells-big", metadata={"stain": "DAPI",
                                                                            "qc": "pass"})
    cat.upload(zyx(volume((2, 16, 16))), name="tissue", metadata={"stain": "H&E"})
    assert [r.name for r in cat.find(name="cells-%")] == ["cells-small", "cells-big"]
    assert [r.name for r in cat.find(metadata={"stain": "DAPI", "qc": "pass"})] == [
        "cells-big"]
    assert [r.id for r in cat.find(min_nbytes=big.nbytes)] == [big.id]
    assert [r.id for r in cat.find(max_nbytes=small.nbytes)] == [small.id]
    assert len(cat.find()) == len(cat) == 3
    table = cat.table()
    assert table.loc[big.id, "metadata"] == "qc=pass; stain=DAPI"
    assert table.loc[big.id, "shape"] == "4x32x32"


def test_keys_list_the_bucket(cat):
    rec = cat.upload(zyx(volume((2, 8, 8))), name="a", chunks=(1, 8, 8))
    z = f"{rec.location}/image.ome.zarr"
    assert cat.keys() == sorted([f"{z}/zarr.json", f"{z}/0/zarr.json",
                                 f"{z}/0/c/0/0/0", f"{z}/0/c/1/0/0"])


# ----------------------------------------------------------------- lazy reads


def test_lazy_read_transfers_only_the_chunks_it_needs(cat):
    vol = volume((8, 64, 64))
    rec = cat.upload(zyx(vol), name="big", chunks=(2, 32, 32))
    counting = CountingStore(rec.zarr_store())
    lazy = rec.open_data(counting)
    assert counting.bytes_read < 2000, "opening reads only metadata"
    counting.reset()
    region = lazy[3, 5:20, 40:60].compute()  # one chunk: z 2-3, y 0-31, x 32-63
    np.testing.assert_array_equal(region, vol[3, 5:20, 40:60])
    chunk_gets = [e for e in counting.events if "/c/" in f"/{e.key}" and e.found]
    assert [e.key for e in chunk_gets] == ["0/c/1/0/1"]
    assert counting.bytes_read < rec.nbytes / 8
    counting.reset()
    lazy[:, :, 0].compute()  # 4 chunks along z times 2 along y
    assert len({e.key for e in counting.events if "/c/" in f"/{e.key}"}) == 4 * 2


def test_docstring_examples_run():
    import doctest

    import data_helpers.catalogue as module

    result = doctest.testmod(module)
    assert result.attempted >= 20 and result.failed == 0


# ----------------------------------------------------------------- issue 13: locks, crashes


class SlowWrites(WrapperStore):
    """Every chunk write blocks for ``delay`` seconds (a slow network). It blocks zarr's
    event loop on purpose, so writes are serial and an upload really takes long."""

    def __init__(self, store, delay=0.05):
        super().__init__(store)
        self.delay = delay

    def _with_store(self, store):
        return type(self)(store, self.delay)

    async def set(self, key, value):
        if "/c/" in f"/{key}":
            time.sleep(self.delay)
        await self._store.set(key, value)


def test_concurrent_writers_wait_instead_of_failing(bucket, tmp_path, monkeypatch):
    """Four writers whose uploads each take (16 x 50 ms) about the lock timeout all
    succeed: no transaction is open while pixels travel. Before, the write lock was held
    for the whole upload and 2 of 8 such uploads failed with 'database is locked'."""
    import threading

    real = Catalogue.zarr_store
    monkeypatch.setattr(Catalogue, "zarr_store",
                        lambda self, loc, read_only=True: SlowWrites(real(self, loc, read_only)))
    db = tmp_path / "shared.sqlite"
    factory = lambda p: bucket(f"concurrent/{p}" if p else "concurrent")  # noqa: E731
    Catalogue(db, factory).close()
    errors, done = [], []

    def writer(i):
        try:
            with Catalogue(db, factory, lock_timeout=1.0, check=False) as c:
                for k in range(2):
                    t0 = time.monotonic()
                    c.upload(zyx(volume((16, 32, 32), seed=i)), name=f"w{i}-{k}",
                             chunks=(1, 32, 32))  # 16 chunk writes x 50 ms
                    done.append(time.monotonic() - t0)
        except Exception as err:  # noqa: BLE001
            errors.append(repr(err))

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with Catalogue(db, factory) as c:
        assert len(c) == 8 and c.orphans() == []


def test_a_locked_database_gives_a_clear_error_and_leaves_nothing(cat):
    other = sqlite3.connect(cat.database, autocommit=True)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    cat.lock_timeout = 0.3
    try:
        with pytest.raises(CatalogueBusyError, match="lock_timeout") as info:
            cat.upload(zyx(volume((1, 4, 4))), name="blocked")
        assert "database is locked" not in str(info.value)
        assert info.value.__cause__ is None and info.value.__suppress_context__
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert rows(cat, "images") == 0 and cat.keys() == []
    cat.lock_timeout = 30
    assert cat.upload(zyx(volume((1, 4, 4))), name="blocked").name == "blocked"


SCRIPT = """
import sys, time, numpy as np, xarray as xr
from pathlib import Path
from obstore.store import LocalStore
from data_helpers.catalogue import Catalogue
import dask.array as da
root = Path(sys.argv[1])
cat = Catalogue(root / "c.sqlite", lambda p: LocalStore(root / "bucket" / p, mkdir=True))
image = da.random.RandomState(0).randint(0, 4000, (2, 32, 256, 256), chunks=(1, 8, 128, 128),
                                         dtype="uint16")
def progress(done, total):
    print("progress", done, total, flush=True)
cat.upload(xr.DataArray(image, dims=("c", "z", "y", "x")), name="long", progress=progress,
           chunks=(1, 8, 64, 64), slab_bytes=1 << 20)
print("finished", flush=True)
"""


def _start_upload(tmp_path):
    import subprocess
    import sys

    (tmp_path / "bucket").mkdir()
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:  # wait until some chunks are written
        if line.startswith("progress") and int(line.split()[1]) > 1 << 20:
            return proc
    raise AssertionError(f"upload never progressed: {proc.stderr.read()[-2000:]}")


def _local(tmp_path):
    from obstore.store import LocalStore

    return lambda p: LocalStore(tmp_path / "bucket" / p, mkdir=True)


def test_kill_9_mid_upload_is_cleaned_when_the_catalogue_is_opened(tmp_path):
    import signal

    proc = _start_upload(tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    left = [p for p in (tmp_path / "bucket").rglob("*") if p.is_file()]
    assert len(left) > 10, "the killed upload left objects"
    with pytest.warns(CatalogueWarning, match="Removed the uploads of clients that are gone"):
        c = Catalogue(tmp_path / "c.sqlite", _local(tmp_path))
    with c:
        assert c.last_check["cleaned"] == ["long"]
        assert c.keys() == [] and rows(c, "images") == 0
        assert c.health() == {"abandoned uploads": [], "uploads in progress": [],
                              "unfinished deletes": [], "orphans": []}


def test_ctrl_c_during_an_upload_is_quiet_and_leaves_nothing(tmp_path):
    import signal

    proc = _start_upload(tmp_path)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert "finished" not in out, "the interrupt must land during the upload"
    assert "KeyboardInterrupt" in err
    assert "Task was destroyed" not in err and "never retrieved" not in err
    assert len(err.splitlines()) < 60, err[-3000:]
    with Catalogue(tmp_path / "c.sqlite", _local(tmp_path)) as c:
        assert rows(c, "images") == 0 and c.keys() == []


def test_delete_with_the_object_store_down_keeps_the_row_and_says_what_is_left(
        bucket, tmp_path, request):
    from obstore.store import S3Store

    state = {"down": False}
    root = request.node.name

    def factory(prefix):
        if state["down"]:  # nothing listens on port 9
            return S3Store("bucket", endpoint="http://127.0.0.1:9", access_key_id="k",
                           secret_access_key="s", region="us-east-1",
                           client_options={"allow_http": True, "timeout": "2s"},
                           retry_config={"max_retries": 0})
        return bucket(f"{root}/{prefix}" if prefix else root)

    with Catalogue(tmp_path / "c.sqlite", factory) as c:
        rec = c.upload(zyx(volume((2, 8, 8))), name="precious",
                       rois=[ROI("point", [(1, 1)])], tables={"t": pd.DataFrame({"a": [1]})})
        n_objects = len(c.keys(rec.location + "/"))
        state["down"] = True
        with pytest.raises(DeleteIncompleteError, match="state 'deleting'.*cleanup"):
            c.delete("precious")
        state["down"] = False
        # hidden from readers, objects all still there, row kept with its ROIs and tables
        assert c.find() == [] and len(c.keys(rec.location + "/")) == n_objects
        assert rows(c, "images") == 1 and rows(c, "rois") == 1 and rows(c, "tables") == 1
        assert c.health()["unfinished deletes"] == ["precious"]
        assert c.delete("precious") == n_objects  # finishing it
        assert rows(c, "images") == 0 and rows(c, "rois") == 0 and c.keys() == []


def test_query_refuses_vacuum_into_attach_and_pragmas(cat, tmp_path):
    cat.upload(zyx(volume((1, 4, 4))), name="a")
    for sql in (f"VACUUM INTO '{tmp_path / 'copy.sqlite'}'",
                f"ATTACH '{tmp_path / 'new.sqlite'}' AS x",
                "PRAGMA journal_mode = DELETE", "INSERT INTO datasets (name) VALUES ('x')",
                "SELECT 1; DROP TABLE images"):
        with pytest.raises((ValueError, Exception), match="read-only|one statement|refused"):
            cat.query(sql)
    assert not (tmp_path / "copy.sqlite").exists() and not (tmp_path / "new.sqlite").exists()
    assert cat.query("WITH n AS (SELECT count(*) AS k FROM images) SELECT k FROM n")["k"][0] == 1


def test_ids_from_numpy_and_pandas_and_clear_errors_for_other_types(cat):
    rec = cat.upload(zyx(volume((1, 4, 4))), name="a")
    ids = pd.Series([rec.id])
    assert cat.get(ids.iloc[0]).name == "a" and cat.get(np.int32(rec.id)).name == "a"
    for bad in (1.0, True, None, ["a"]):
        with pytest.raises(TypeError, match="its name .* or its id"):
            cat.get(bad)
    with pytest.raises(KeyError, match="No image with id 99"):
        cat.get(np.int64(99))


# ----------------------------------------------------------------- issue 15: self-describing


def test_objects_describe_themselves_without_the_database(cat):
    import tensorstore as ts

    flat = cat.upload(xr.DataArray(volume((1, 40, 50))[0], dims=("y", "x")), name="flat 2-D")
    multi = cat.upload(xr.DataArray(volume((2, 3, 40, 50)), dims=("c", "z", "y", "x"),
                                    coords={"c": ["DAPI", "GFP"]}),
                       name="two channels", scale={"z": 2.0, "y": 0.5, "x": 0.5})
    g = zarr.open_group(flat.zarr_store(), mode="r", zarr_format=3)
    axes = g.attrs["ome"]["multiscales"][0]["axes"]
    assert axes == [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}]
    assert flat.scale == {"y": 1.0, "x": 1.0} and flat.unit is None
    g = zarr.open_group(multi.zarr_store(), mode="r", zarr_format=3)
    ome = g.attrs["ome"]
    assert ome["multiscales"][0]["name"] == "two channels"
    assert [a["name"] for a in ome["multiscales"][0]["axes"]] == ["c", "z", "y", "x"]
    assert [a.get("unit") for a in ome["multiscales"][0]["axes"]] == [
        None, "micrometer", "micrometer", "micrometer"]
    assert [c["label"] for c in ome["omero"]["channels"]] == ["DAPI", "GFP"]
    assert ome["multiscales"][0]["type"] and ome["multiscales"][0]["metadata"]
    # a rename reaches the bucket too
    multi.name = "renamed"
    multi.save()
    g = zarr.open_group(multi.zarr_store(), mode="r", zarr_format=3)
    assert g.attrs["ome"]["multiscales"][0]["name"] == "renamed"
    # a second implementation (tensorstore) reads the pixels from the bucket's objects
    rec = cat.get("renamed")
    import obstore

    level0 = {k: bytes(obstore.get(cat.object_store(""), k).bytes())
              for k in cat.keys(rec.zarr_location + "/0/")}
    spec = {"driver": "zarr3", "kvstore": {"driver": "memory"}}
    arr = ts.open({**spec, "create": True, "open": True,
                   "metadata": json.loads(level0[f"{rec.zarr_location}/0/zarr.json"])}).result()
    kv = arr.kvstore
    for k, v in level0.items():
        kv.write(k.removeprefix(f"{rec.zarr_location}/0/"), v).result()
    np.testing.assert_array_equal(arr.read().result(), volume((2, 3, 40, 50)))


def test_pyramid_halves_xy_and_z_only_while_not_coarser(cat):
    rec = cat.upload(zyx(volume((8, 600, 520))), name="aniso", scale={"z": 1.0, "y": 0.25,
                                                                        "x": 0.25})
    g = zarr.open_group(rec.zarr_store(), mode="r", zarr_format=3)
    shapes = [g[str(k)].shape for k in range(rec.levels)]
    assert shapes == [(8, 600, 520), (8, 300, 260), (8, 150, 130)]  # z kept: 1 > 0.25
    ds = g.attrs["ome"]["multiscales"][0]["datasets"]
    assert ds[1]["coordinateTransformations"] == [
        {"type": "scale", "scale": [1.0, 0.5, 0.5]},
        {"type": "translation", "translation": [0.0, 0.125, 0.125]}]
    level1 = g["1"][:]
    expected = volume((8, 600, 520)).reshape(8, 300, 2, 260, 2).mean(axis=(2, 4))
    np.testing.assert_array_equal(level1, np.floor(expected + 0.5).astype("uint16"))


def test_thumbnail_reads_only_the_top_level(cat):
    rec = cat.upload(zyx(volume((4, 1024, 1024))), name="big", chunks=(1, 256, 256))
    assert rec.levels == 3
    counting = CountingStore(rec.zarr_store())
    thumb = rec.thumbnail(counting)
    assert thumb.shape == (1, 256, 256)  # z (isotropic voxels) is halved with y and x
    keys = {e.key for e in counting.events}
    assert all(k.startswith("2/") or k == "zarr.json" for k in keys), keys
    assert counting.bytes_read < rec.nbytes / 10


def make_full(cat, prefix=""):
    image, lab = volume((2, 4, 64, 64)), np.zeros((4, 64, 64), "uint16")
    lab[1:3, 10:20, 10:30] = 1
    lab[2:4, 40:50, 30:60] = 2
    table = pd.DataFrame({"label": [1, 2], "voxels": [400, 600], "mean": [12.5, 13.0]})
    return cat.upload(
        xr.DataArray(image, dims=("c", "z", "y", "x")), name=prefix + "full",
        channel_names=[prefix + "nuclei", prefix + "membranes"],
        metadata={prefix + "k": prefix + "v"}, labels={"nuclei": lab},
        rois=[ROI("rectangle", [(10, 10), (20, 30)], name=prefix + "box", z=1, c=0),
              ROI("polygon", [(1, 1), (5, 9), (9, 2)], name=prefix + "tri"),
              ROI("mask", name=prefix + "nucleus 2", mask="nuclei", mask_value=2)],
        tables={prefix + "nuclei": table}, datasets=[prefix + "screen"],
        scale={"z": 1.0, "y": 0.5, "x": 0.5})


def test_rois_tables_labels_datasets_and_provenance(cat):
    from ome_zarr_models.v05.image import Image

    rec = make_full(cat)
    g = zarr.open_group(rec.zarr_store(), mode="r", zarr_format=3)
    model = Image.from_zarr(g)  # validates the labels group too
    assert model.labels is not None
    assert g["labels"].attrs["ome"]["labels"] == ["nuclei"]
    assert g["labels/nuclei"].attrs["ome"]["image-label"]["source"]["image"] == "../../"
    assert g["labels/nuclei/0"].shape == (1, 4, 64, 64)
    np.testing.assert_array_equal(rec.label_image("nuclei").compute()[0, 2, 45, 40], 2)
    assert [r.name for r in rec.rois] == ["box", "tri", "nucleus 2"]
    assert rec.rois[0] == ROI("rectangle", ((10.0, 10.0), (20.0, 30.0)), name="box", z=1, c=0)
    assert rec.read_table("nuclei")["voxels"].tolist() == [400, 600]
    cat.add_table(rec, "box stats", pd.DataFrame({"mean": [1.0]}), roi="box")
    assert cat.tables(rec).set_index("name").loc["box stats", "roi"] == "box"
    other = cat.upload(zyx(volume((1, 8, 8))), name="other", datasets=["screen", "controls"])
    cat.add_to_dataset("controls", [rec], description="the controls")
    assert [r.name for r in cat.find(dataset="screen")] == ["full", "other"]
    assert [r.name for r in cat.find(dataset="controls")] == ["full", "other"]
    assert [r.name for r in cat.find(channel="membranes")] == ["full"]
    mip = cat.upload(xr.DataArray(volume((1, 64, 64))[0], dims=("y", "x")), name="mip",
                     derived_from=[rec], step="max projection along z")
    assert cat.provenance(mip).to_dict("records") == [
        {"source_location": rec.location, "source": "full", "step": "max projection along z"}]
    # deleting the image removes its ROI, table, label and dataset rows and objects
    n = len(cat.keys(rec.location + "/"))
    assert any(k.endswith(".parquet") for k in cat.keys(rec.location + "/"))
    assert cat.delete(rec) == n
    for table in ("rois", "tables", "labels", "channels"):
        assert cat.connection.execute(f"SELECT count(*) FROM {table} WHERE image_id = ?",
                                      (rec.id,)).fetchone()[0] == 0
    assert cat.keys(rec.location + "/") == []
    assert cat.provenance(mip)["source"].isna().all()  # the source is gone, the record stays
    assert [r.name for r in cat.find(dataset="controls")] == ["other"]
    del other


def test_injection_in_every_new_text_field(cat):
    rec = make_full(cat, prefix=INJECTION)
    cat.add_to_dataset(INJECTION + "d", [rec], description=INJECTION)
    cat.add_table(rec, INJECTION + "t", pd.DataFrame({INJECTION: [1]}), roi=INJECTION + "box")
    cat.upload(zyx(volume((1, 8, 8))), name="derived", derived_from=[rec], step=INJECTION)
    tables = {r[0] for r in cat.connection.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"images", "metadata", "rois", "tables", "datasets", "provenance"} <= tables
    assert [r.name for r in cat.find(dataset=INJECTION + "screen")] == [INJECTION + "full"]
    assert [r.name for r in cat.find(channel=INJECTION + "nuclei")] == [INJECTION + "full"]
    assert {r.name for r in cat.rois(rec)} == {INJECTION + n for n in ("box", "tri", "nucleus 2")}
    assert cat.read_table(rec, INJECTION + "t").columns.tolist() == [INJECTION]
    assert cat.provenance("derived")["step"].tolist() == [INJECTION]
    assert cat.datasets().set_index("name").loc[INJECTION + "d", "description"] == INJECTION


@pytest.mark.parametrize("where", ["labels", "tables", "final"])
def test_half_failed_upload_with_rois_tables_labels_leaves_nothing(cat, monkeypatch, where):
    import obstore

    make_full(cat, prefix="keep ")
    before = cat.snapshot()
    keys = cat.keys()
    if where == "labels":  # fail on the first label chunk, after every image chunk
        real = Catalogue.zarr_store

        class FailLabels(WrapperStore):
            def _with_store(self, store):
                return type(self)(store)

            async def set(self, key, value):
                if key.startswith("labels/") and "/c/" in key:
                    raise OSError("simulated failure writing a label chunk")
                await self._store.set(key, value)

        monkeypatch.setattr(Catalogue, "zarr_store",
                            lambda self, loc, read_only=True: FailLabels(real(self, loc, read_only)))
    elif where == "tables":
        monkeypatch.setattr(Catalogue, "_put_parquet",
                            lambda *a, **k: (_ for _ in ()).throw(OSError("simulated parquet")))
    else:
        real_insert = Catalogue._insert_table

        def fail(self, con, image_id, name, *a, **k):
            real_insert(self, con, image_id, name, *a, **k)
            raise OSError("simulated failure after the table row")

        monkeypatch.setattr(Catalogue, "_insert_table", fail)
    with pytest.raises(OSError, match="simulated"):
        make_full(cat)
    monkeypatch.undo()
    for table, frame in cat.snapshot().items():
        pd.testing.assert_frame_equal(frame, before[table], obj=table)
    assert cat.keys() == keys and cat.orphans() == []
    assert rows(cat, "images") == 1
    del obstore


def test_rebuild_from_the_bucket_equals_the_original_rows(cat, tmp_path):
    rec = make_full(cat)
    cat.add_table(rec, "extra", pd.DataFrame({"a": [1, 2, 3]}), roi="box")
    cat.add_to_dataset("controls", [rec], description="controls of the screen")
    cat.upload(xr.DataArray(volume((1, 64, 64))[0], dims=("y", "x")), name="mip",
               derived_from=[rec], step="max projection", metadata={"k": "v"})
    edited = cat.get("mip")
    edited.metadata["reviewed"] = "yes"
    edited.save()
    original = cat.snapshot()
    rebuilt = Catalogue.rebuild(tmp_path / "rebuilt.sqlite", cat.object_store)
    with rebuilt:
        again = rebuilt.snapshot()
        for table, frame in original.items():
            pd.testing.assert_frame_equal(again[table], frame, obj=table)
        assert len(original["rois"]) == 3 and len(original["tables"]) == 2
        np.testing.assert_array_equal(rebuilt.get("full").data.compute(),
                                      cat.get("full").data.compute())
    with pytest.raises(FileExistsError, match="new path"):
        Catalogue.rebuild(tmp_path / "rebuilt.sqlite", cat.object_store)


def test_big_lazy_upload_streams_in_bounded_memory(cat):
    from data_helpers.phantom import make_phantom

    image, _ = make_phantom((32, 512, 512), chunks=(8, 256, 256))  # 32 MiB, lazy
    seen = []
    rec = cat.upload(xr.DataArray(image, dims=("c", "z", "y", "x")), name="lazy phantom",
                     chunks=(1, 8, 256, 256), slab_bytes=4 << 20,
                     progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (image.nbytes, image.nbytes) and len(seen) >= 8
    assert all(b - a <= 4 << 20 for (a, _), (b, _) in zip([(0, 0)] + seen, seen))
    np.testing.assert_array_equal(rec.data[1, 20, 100:110, 300:310].compute(),
                                  image[1, 20, 100:110, 300:310].compute())


def test_lazy_labels_are_counted_and_stored(cat):
    lab = np.zeros((4, 32, 32), "uint16")
    lab[:, 2:10, 2:10] = 3
    lab[1:3, 20:30, 5:25] = 7
    rec = cat.upload(zyx(volume((4, 32, 32))), name="lazy labels",
                     labels={"cells": zyx(da.from_array(lab, chunks=(2, 16, 16)))})
    assert cat.snapshot()["labels"].values.tolist() == [["lazy labels", "cells", 2]]
    np.testing.assert_array_equal(rec.label_image("cells").compute(), lab)
