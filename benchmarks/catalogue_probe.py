"""Probe the catalogue for issue 13's defects; print one line per probe.

    python benchmarks/catalogue_probe.py new
    git show 7a0e28b:data_helpers/catalogue.py > /tmp/old_catalogue.py
    python benchmarks/catalogue_probe.py old /tmp/old_catalogue.py   # the version before the fix
"""
import importlib.util, sys, time, threading, sqlite3, tempfile, os, signal, subprocess, asyncio
from pathlib import Path
import numpy as np, xarray as xr
from zarr.storage import WrapperStore
which = sys.argv[1]
if which == "old":
    spec = importlib.util.spec_from_file_location("oldcat", sys.argv[2])
    mod = importlib.util.module_from_spec(spec); sys.modules["oldcat"] = mod; spec.loader.exec_module(mod)
else:
    import data_helpers.catalogue as mod
Catalogue = mod.Catalogue
from data_helpers.servers import s3_server

class Slow(WrapperStore):
    def _with_store(self, store): return type(self)(store)
    async def set(self, key, value):
        if "/c/" in f"/{key}": time.sleep(0.05)   # blocks zarr's loop: writes serialise
        await self._store.set(key, value)

def img(seed):
    return xr.DataArray(np.random.default_rng(seed).integers(0, 4000, (16, 32, 32)).astype("u2"), dims=("z","y","x"))
kw = (lambda: {"chunks": (1,1,1,32,32)}) if which == "old" else (lambda: {"chunks": (1,32,32)})

with s3_server() as s3, tempfile.TemporaryDirectory() as tmp:
    tmp = Path(tmp)
    # 1. four concurrent writers, two 16-chunk uploads each
    real = Catalogue.zarr_store
    Catalogue.zarr_store = lambda self, loc, read_only=True: Slow(real(self, loc, read_only))
    fac = lambda p: s3.obstore_store(f"w/{p}" if p else "w")
    Catalogue(tmp/"w.sqlite", fac).close()
    errors = []
    def writer(i):
        c = Catalogue(tmp/"w.sqlite", fac)
        for k in range(2):
            try: c.upload(img(i), name=f"w{i}-{k}", **kw())
            except Exception as e: errors.append(f"{type(e).__name__}: {e}")
    ts = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    [t.start() for t in ts]; [t.join() for t in ts]
    Catalogue.zarr_store = real
    raw = sum("database is locked" in e for e in errors)
    print(f"concurrent writers: {8 - len(errors)}/8 uploads ok, {raw} raw 'database is locked'")
    # 2. query VACUUM INTO / ATTACH
    c = Catalogue(tmp/"q.sqlite", lambda p: s3.obstore_store(f"q/{p}" if p else "q"))
    c.upload(img(0), name="a", **kw())
    for sql, f in ((f"VACUUM INTO '{tmp}/copy.sqlite'", "copy.sqlite"), (f"ATTACH '{tmp}/new.sqlite' AS x", "new.sqlite")):
        try: c.query(sql); outcome = "ran"
        except Exception as e: outcome = f"refused ({type(e).__name__})"
        print(f"query {sql.split()[0]}: {outcome}; file written: {(tmp/f).exists()}")
    # 3. numpy ids
    try: print("get(np.int64(1)):", c.get(np.int64(1)).name)
    except Exception as e: print("get(np.int64(1)):", type(e).__name__, str(e)[:80])
    # 4. delete with the store down
    from obstore.store import S3Store
    down = {"on": False}
    base = lambda p: s3.obstore_store(f"d/{p}" if p else "d")
    def fac2(p):
        if down["on"]:
            return S3Store("bucket", endpoint="http://127.0.0.1:9", access_key_id="k", secret_access_key="s", region="us-east-1", client_options={"allow_http": True, "timeout": "2s"}, retry_config={"max_retries": 0})
        return base(p)
    d = Catalogue(tmp/"d.sqlite", fac2)
    rec = d.upload(img(1), name="precious", **kw())
    down["on"] = True
    try: d.delete("precious"); msg = "no error"
    except Exception as e: msg = f"{type(e).__name__}: {str(e)[:160]}"
    down["on"] = False
    n_rows = d.connection.execute("SELECT count(*) FROM images").fetchone()[0]
    print(f"delete with store down: {msg} | rows left {n_rows}, objects left {len(d.keys(rec.location + '/'))}")
