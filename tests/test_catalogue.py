"""The image catalogue: a real SQLite file plus an object store holding OME-Zarr 0.5.

Every test gets its own SQLite file in tmp_path and its own prefix of the bucket, so
"nothing left behind" can be checked by listing that prefix.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import dask.array as da
import numpy as np
import pytest
import xarray as xr
import zarr
from zarr.storage import WrapperStore

from data_helpers.catalogue import CANONICAL_DIMS, Catalogue, ImageRecord, to_canonical
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
    assert rec.dims == CANONICAL_DIMS
    assert rec.shape == (1, 1, 6, 40, 50)
    assert rec.dtype == "uint16" and rec.nbytes == vol.nbytes
    assert rec.scale == pytest.approx({"t": 1.0, "z": 0.5, "y": 0.2, "x": 0.2})
    assert rec.metadata == {"plate": "3", "stain": "DAPI"}
    assert before <= rec.created_at <= datetime.now(UTC)
    assert rec.location.startswith("images/") and rec.location.endswith(".ome.zarr")
    assert rec.url.endswith(rec.location)

    lazy = rec.data
    assert isinstance(lazy, da.Array) and lazy.dtype == np.uint16
    np.testing.assert_array_equal(lazy.compute()[0, 0], vol)
    as_xr = rec.to_xarray().squeeze(("t", "c"))
    np.testing.assert_allclose(as_xr["z"].values, coords["z"])
    np.testing.assert_array_equal(as_xr.values, vol)

    group = zarr.open_group(rec.zarr_store(), mode="r")
    assert group.metadata.zarr_format == 3
    ome = Image.from_zarr(group)  # validates against OME-Zarr 0.5
    ms = ome.attributes.ome.multiscales[0]
    assert [a.name for a in ms.axes] == list(CANONICAL_DIMS)
    assert ms.datasets[0].coordinateTransformations[0].scale == pytest.approx(
        [1.0, 1.0, 0.5, 0.2, 0.2]
    )
    assert group["0"].compressors, "pixels must be compressed"


def test_dims_are_expanded_and_transposed_to_tczyx():
    a = xr.DataArray(np.arange(24).reshape(2, 3, 4), dims=("x", "c", "y"))
    out = to_canonical(a)
    assert out.dims == CANONICAL_DIMS and out.shape == (1, 3, 1, 4, 2)
    # value at x=1, c=2, y=3 lands at [t=0, c=2, z=0, y=3, x=1]
    assert out.values[0, 2, 0, 3, 1] == a.values[1, 2, 3]


def test_dask_backed_input_and_explicit_scale_and_chunks(cat):
    vol = volume((4, 30, 30), seed=1)
    lazy = zyx(da.from_array(vol, chunks=(3, 7, 11)))
    rec = cat.upload(lazy, name="lazy", scale={"z": 2.0}, chunks=(1, 1, 2, 16, 16))
    assert rec.scale["z"] == 2.0 and rec.scale["x"] == 1.0
    arr = zarr.open_array(rec.zarr_store(), path="0", mode="r")
    assert arr.chunks == (1, 1, 2, 16, 16)
    np.testing.assert_array_equal(arr[0, 0], vol)


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
    with pytest.raises(Exception, match="readonly|read-only"):
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
        cat.upload(data, name="broken", metadata={"stain": "DAPI"},
                   chunks=(1, 1, 1, 32, 32))
    assert len(state["s"]["written"]) == 3, "the failure must come after some chunks"
    monkeypatch.undo()

    assert rows(cat, "images") == 1 and rows(cat, "metadata") == 1
    assert cat.keys() == keys_before
    assert cat.orphans() == []
    with pytest.raises(KeyError):
        cat.get("broken")
    # the catalogue still works, and the name is free again
    np.testing.assert_array_equal(cat.get("keep").data.compute()[0, 0], volume((2, 8, 8)))
    assert cat.upload(zyx(vol), name="broken").name == "broken"
    assert keep.id != cat.get("broken").id


def test_failure_to_commit_the_row_removes_the_objects(cat, monkeypatch):
    """The row is committed last: if the database refuses it, the objects go too."""
    cat.upload(zyx(volume((1, 4, 4))), name="taken")
    # bypass the friendly early check to reach the UNIQUE constraint inside the
    # transaction, as a concurrent client with the same name would
    real_execute = cat.connection.execute

    class Connection:
        def __getattr__(self, name):
            return getattr(real_execute.__self__, name)

        def execute(self, sql, *args):
            if sql.startswith("SELECT 1 FROM images WHERE name"):
                return real_execute("SELECT 1 WHERE 0")
            return real_execute(sql, *args)

    monkeypatch.setattr(cat, "connection", Connection())
    with pytest.raises(ValueError, match="unique"):
        cat.upload(zyx(volume((1, 4, 4))), name="taken")
    monkeypatch.undo()
    assert rows(cat, "images") == 1
    assert cat.orphans() == []
    assert len({k.split("/")[1] for k in cat.keys("images/")}) == 1


# ----------------------------------------------------------------- delete


def test_delete_leaves_nothing_behind(cat):
    other = cat.upload(zyx(volume((2, 8, 8), seed=2)), name="other", metadata={"k": "v"})
    rec = cat.upload(zyx(volume((4, 40, 40))), name="doomed",
                     metadata={"stain": "DAPI", "k": "v"}, chunks=(1, 1, 1, 20, 20))
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
    np.testing.assert_array_equal(other.data.compute()[0, 0], volume((2, 8, 8), seed=2))
    with pytest.raises(KeyError):
        cat.delete(rec)


def test_orphans_finds_objects_without_a_row(cat):
    import obstore

    obstore.put(cat.object_store(""), "images/crashed.ome.zarr/zarr.json", b"{}")
    cat.upload(zyx(volume((1, 4, 4))), name="ok")
    assert cat.orphans() == ["images/crashed.ome.zarr"]


# ----------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("data", "error", "fix"),
    [
        (np.zeros((4, 4)), TypeError, r"xr\.DataArray\(array, dims="),
        (xr.DataArray(np.zeros((4, 4)), dims=("row", "col")), ValueError, "rename"),
        (xr.DataArray(np.array([["a"]]), dims=("y", "x")), ValueError, "astype"),
        (xr.DataArray(np.zeros((0, 4)), dims=("y", "x")), ValueError, "empty"),
    ],
    ids=["numpy", "unknown-dims", "strings", "empty"],
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
        ({"name": "c", "chunks": (1, 1, 4)}, "5 positive sizes"),
    ],
    ids=["empty-name", "metadata-list", "scale-key", "chunks"],
)
def test_bad_arguments_are_refused_with_the_fix(cat, kwargs, fix):
    with pytest.raises(ValueError, match=fix):
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
    two.shape = (1, 1, 1, 8, 8)
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
    assert table.loc[big.id, "shape_tczyx"] == "1x1x4x32x32"


def test_keys_list_the_bucket(cat):
    rec = cat.upload(zyx(volume((2, 8, 8))), name="a", chunks=(1, 1, 1, 8, 8))
    assert cat.keys() == sorted([f"{rec.location}/zarr.json", f"{rec.location}/0/zarr.json",
                                 f"{rec.location}/0/c/0/0/0/0/0",
                                 f"{rec.location}/0/c/0/0/1/0/0"])


# ----------------------------------------------------------------- lazy reads


def test_lazy_read_transfers_only_the_chunks_it_needs(cat):
    vol = volume((8, 64, 64))
    rec = cat.upload(zyx(vol), name="big", chunks=(1, 1, 2, 32, 32))
    counting = CountingStore(rec.zarr_store())
    lazy = rec.open_data(counting)
    assert counting.bytes_read < 2000, "opening reads only metadata"
    counting.reset()
    region = lazy[0, 0, 3, 5:20, 40:60].compute()  # one chunk: z 2-3, y 0-31, x 32-63
    np.testing.assert_array_equal(region, vol[3, 5:20, 40:60])
    chunk_gets = [e for e in counting.events if "/c/" in f"/{e.key}" and e.found]
    assert [e.key for e in chunk_gets] == ["0/c/0/0/1/0/1"]
    assert counting.bytes_read < rec.nbytes / 8
    counting.reset()
    lazy[0, 0, :, :, 0].compute()  # 4 chunks along z times 2 along y
    assert len({e.key for e in counting.events if "/c/" in f"/{e.key}"}) == 4 * 2


def test_docstring_examples_run():
    import doctest

    import data_helpers.catalogue as module

    result = doctest.testmod(module)
    assert result.attempted >= 20 and result.failed == 0
