"""Bad inputs to the public functions of data_helpers (servers, files, measure, plot,
data), each with the error it must raise and words of the message that name the fix.

Used by ``tests/test_bad_inputs.py``; the same list can be run as a probe that counts
clear errors, unclear errors and silently accepted inputs.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

VOL = np.arange(4 * 5 * 6, dtype="uint16").reshape(4, 5, 6)


def enter(cm) -> None:
    with cm:
        pass


def cases(tmp: Path) -> list[tuple[str, object, tuple[type, ...], str]]:
    """``(name, call, exception types, regex the message must match)``."""
    from data_helpers import data, files, measure, plot, servers

    plain = tmp / "plain"
    plain.mkdir(exist_ok=True)
    (plain / "x.txt").write_text("x")
    a_file = tmp / "a-file.txt"
    a_file.write_text("x")
    loop = tmp / "loop"
    loop.mkdir(exist_ok=True)
    for name in ("self", "dangling"):
        with_link = loop / name
        if not with_link.is_symlink():
            os.symlink(loop if name == "self" else tmp / "nowhere", with_link)
    cyc = tmp / "cycle"
    if not cyc.is_symlink():
        os.symlink(cyc, cyc)  # a link to itself
    s3 = lambda **kw: (lambda: enter(servers.s3_server(startup_timeout=8, **kw)))  # noqa: E731
    web = lambda *a, **kw: (lambda: enter(servers.http_server(*a, **kw)))  # noqa: E731
    srv = servers.S3Server("http://127.0.0.1:1", "book", "k", "s", "us-east-1", 0,
                           Path("."), Path("."), 1)  # fmt: skip
    TE, VE = (TypeError,), (ValueError,)
    TV = (TypeError, ValueError)
    port_rule = r"between 1024 and 55535"
    bucket_rule = r"3-63"
    c: list[tuple[str, object, tuple[type, ...], str]] = [
        # -- s3_server
        ("s3 port=0", s3(port=0), VE, port_rule),
        ("s3 port=-1", s3(port=-1), VE, port_rule),
        ("s3 port=70000", s3(port=70000), VE, port_rule),
        ("s3 port=60000 (its gRPC port would be > 65535)", s3(port=60000), VE, port_rule),
        ("s3 port=80 (privileged)", s3(port=80), VE, port_rule),
        ("s3 port='9000'", s3(port="9000"), TE, "integer"),
        ("s3 port=1.5", s3(port=1.5), TE, "integer"),
        ("s3 port=True", s3(port=True), TE, "integer"),
        ("s3 bucket='a..b'", s3(bucket="a..b"), VE, bucket_rule),
        ("s3 bucket='ab'", s3(bucket="ab"), VE, bucket_rule),
        ("s3 bucket='My_Bucket'", s3(bucket="My_Bucket"), VE, bucket_rule),
        ("s3 bucket='-ab'", s3(bucket="-abc"), VE, bucket_rule),
        ("s3 bucket='a.-b'", s3(bucket="a.-bc"), VE, bucket_rule),
        ("s3 bucket='192.168.1.1'", s3(bucket="192.168.1.1"), VE, bucket_rule),
        ("s3 bucket=''", s3(bucket=""), VE, bucket_rule),
        ("s3 bucket=None", s3(bucket=None), TV, bucket_rule),
        ("s3 bucket=123", s3(bucket=123), TV, bucket_rule),
        ("s3 access_key_id=''", s3(access_key_id=""), VE, "omit it"),
        ("s3 access_key_id='a b'", s3(access_key_id="a b"), VE, "omit it"),
        ("s3 access_key_id=123", s3(access_key_id=123), TV, "omit it"),
        ("s3 secret_access_key='short'", s3(secret_access_key="short"), VE, "8-128"),
        ("s3 secret_access_key='has space'", s3(secret_access_key="has a space"), VE, "8-128"),
        ("s3 region=''", s3(region=""), VE, "us-east-1"),
        ("s3 region='US East'", s3(region="US East"), VE, "us-east-1"),
        ("s3 region=1", s3(region=1), TV, "us-east-1"),
        ("s3 data_dir=<a file>", s3(data_dir=a_file), (NotADirectoryError,), "pass a folder"),
        ("s3 data_dir=123", s3(data_dir=123), TE, "folder path"),
        ("s3 data_dir=''", s3(data_dir=""), TE, "folder path"),
        ("s3 keep_data='yes'", s3(keep_data="yes"), TE, "True or False"),
        ("s3 startup_timeout=0", lambda: enter(servers.s3_server(startup_timeout=0)), VE,
         "positive number"),
        ("s3 startup_timeout=-1", lambda: enter(servers.s3_server(startup_timeout=-1)), VE,
         "positive number"),
        ("s3 startup_timeout='5'", lambda: enter(servers.s3_server(startup_timeout="5")), VE,
         "positive number"),
        ("s3 startup_timeout=nan", lambda: enter(servers.s3_server(startup_timeout=float("nan"))),
         VE, "positive number"),
        ("S3Server.zarr_store(1)", lambda: srv.zarr_store(1), TE, "string key prefix"),
        ("S3Server.zarr_store('../x')", lambda: srv.zarr_store("../x"), VE, "plain names"),
        ("S3Server.zarr_store(read_only='no')", lambda: srv.zarr_store("a", read_only="no"), TE,
         "True or False"),
        ("S3Server.obstore_store(None)", lambda: srv.obstore_store(None), TE, "string key prefix"),
        ("S3Server.url(5)", lambda: srv.url(5), TE, "string key prefix"),
        # -- http_server
        ("http directory=None", web(None), TE, "folder to serve"),
        ("http directory=123", web(123), TE, "folder to serve"),
        ("http directory=''", web(""), TE, "folder to serve"),
        ("http directory=<a file>", web(a_file), (NotADirectoryError,), "pass the folder"),
        ("http directory=<missing>", web(tmp / "missing"), (NotADirectoryError,), "pass the folder"),
        ("http port=-1", web(plain, port=-1), VE, "between 0 and 65535"),
        ("http port=70000", web(plain, port=70000), VE, "between 0 and 65535"),
        ("http port='80'", web(plain, port="80"), TE, "integer"),
        ("http port=1.5", web(plain, port=1.5), TE, "integer"),
        ("http port=True", web(plain, port=True), TE, "integer"),
        ("http index_pages='no'", web(plain, index_pages="no"), TE, "True or False"),
        # -- files
        ("tree(None)", lambda: files.tree(None), TE, "path of a Zarr store"),
        ("tree(123)", lambda: files.tree(123), TE, "path of a Zarr store"),
        ("tree(<missing>)", lambda: files.tree(tmp / "missing"), (FileNotFoundError,),
         "does not exist"),
        ("tree(<folder with a symlink loop>)", lambda: files.tree(loop), (), ""),
        ("tree(<symlink to itself>)", lambda: files.tree(cyc), (OSError,), "symbolic link"),
        ("tree(max_entries=0)", lambda: files.tree(plain, max_entries=0), VE, "at least 1"),
        ("tree(max_entries=-1)", lambda: files.tree(plain, max_entries=-1), VE, "at least 1"),
        ("tree(max_entries='3')", lambda: files.tree(plain, max_entries="3"), TE, "integer"),
        ("tree(max_entries=2.5)", lambda: files.tree(plain, max_entries=2.5), TE, "integer"),
        ("tree(sizes='no')", lambda: files.tree(plain, sizes="no"), TE, "True or False"),
        ("disk_usage(None)", lambda: files.disk_usage(None), TE, "path"),
        ("disk_usage(<missing>)", lambda: files.disk_usage(tmp / "missing"), (FileNotFoundError,),
         "does not exist"),
        ("disk_usage(<folder with a symlink loop>)", lambda: files.disk_usage(loop), (), ""),
        # -- measure
        ("CountingStore(None)", lambda: measure.CountingStore(None), TE, "zarr store"),
        ("CountingStore('path')", lambda: measure.CountingStore("data.zarr"), TE, "zarr store"),
        ("time_it(None)", lambda: measure.time_it(None), TE, "callable"),
        ("time_it(5)", lambda: measure.time_it(5), TE, "callable"),
        ("time_it(repeat=0)", lambda: measure.time_it(lambda: 0, repeat=0), VE, "at least 1"),
        ("time_it(repeat='3')", lambda: measure.time_it(lambda: 0, repeat="3"), TE, "integer"),
        ("time_it(repeat=2.5)", lambda: measure.time_it(lambda: 0, repeat=2.5), TE, "integer"),
        ("time_it(repeat=True)", lambda: measure.time_it(lambda: 0, repeat=True), TE, "integer"),
        ("time_it(nbytes=-1)", lambda: measure.time_it(lambda: 0, nbytes=-1), VE, "bytes"),
        ("time_it(nbytes='10')", lambda: measure.time_it(lambda: 0, nbytes="10"), TE, "bytes"),
        ("time_it(setup=5)", lambda: measure.time_it(lambda: 0, setup=5), TE, "callable"),
        ("time_it(warmup='no')", lambda: measure.time_it(lambda: 0, warmup="no"), TE,
         "True or False"),
        ("Timing(()).seconds", lambda: measure.Timing(()).seconds, VE, "at least one"),
        ("Timing((1,), nbytes=0).mb_per_s", lambda: measure.Timing((1.0,), nbytes=0).mb_per_s,
         VE, "nbytes"),
        ("Timing((0.0,), nbytes=10).mb_per_s", lambda: measure.Timing((0.0,), nbytes=10).mb_per_s,
         VE, "too short"),
        # -- plot
        ("show_slice(None)", lambda: plot.show_slice(None), TE, "numpy, zarr, dask or xarray"),
        ("show_slice(<list>)", lambda: plot.show_slice([[[1]]]), TE, "np.asarray"),
        ("show_slice(<2-D>)", lambda: plot.show_slice(np.zeros((3, 3))), VE, "3-D"),
        ("show_slice(axis=3)", lambda: plot.show_slice(VOL, axis=3), VE, "0, 1, 2"),
        ("show_slice(axis='w')", lambda: plot.show_slice(VOL, axis="w"), VE, "0, 1, 2"),
        ("show_slice(axis=1.5)", lambda: plot.show_slice(VOL, axis=1.5), VE, "0, 1, 2"),
        ("show_slice(index=10)", lambda: plot.show_slice(VOL, index=10), VE, "use 0..3"),
        ("show_slice(index='a')", lambda: plot.show_slice(VOL, index="a"), TE, "integer"),
        ("show_slice(index=1.5)", lambda: plot.show_slice(VOL, index=1.5), TE, "integer"),
        ("show_slice(cmap='nope')", lambda: plot.show_slice(VOL, cmap="nope"), VE, "colormap"),
        ("show_slice(ax='x')", lambda: plot.show_slice(VOL, ax="x"), TE, "Axes"),
        ("show_slice(vmin='a')", lambda: plot.show_slice(VOL, vmin="a"), TE, "number"),
        ("show_slice(vmin=5, vmax=1)", lambda: plot.show_slice(VOL, vmin=5, vmax=1), VE,
         "vmin"),
        ("orthoviews(point=(1, 2))", lambda: plot.orthoviews(VOL, point=(1, 2)), VE, "3 indices"),
        ("orthoviews(point=(100, 0, 0))", lambda: plot.orthoviews(VOL, point=(100, 0, 0)), VE,
         "3 indices"),
        ("orthoviews(point='abc')", lambda: plot.orthoviews(VOL, point="abc"), TV, "3 indices"),
        ("orthoviews(point=5)", lambda: plot.orthoviews(VOL, point=5), TV, "3 indices"),
        ("orthoviews(fig='x')", lambda: plot.orthoviews(VOL, fig="x"), TE, "Figure"),
        ("montage(n=0)", lambda: plot.montage(VOL, n=0), VE, "at least 1"),
        ("montage(n='4')", lambda: plot.montage(VOL, n="4"), TE, "integer"),
        ("montage(n=2.5)", lambda: plot.montage(VOL, n=2.5), TE, "integer"),
        ("montage(indices=[100])", lambda: plot.montage(VOL, indices=[100]), VE, "outside"),
        ("montage(indices=[])", lambda: plot.montage(VOL, indices=[]), VE, "at least one"),
        ("montage(indices='ab')", lambda: plot.montage(VOL, indices="ab"), TE, "integers"),
        ("montage(ncols=0)", lambda: plot.montage(VOL, ncols=0), VE, "at least 1"),
        ("montage(ncols=-1)", lambda: plot.montage(VOL, ncols=-1), VE, "at least 1"),
        ("show_chunk_grid(<no chunks>)", lambda: plot.show_chunk_grid(VOL), VE, "pass chunks="),
        ("show_chunk_grid(chunks=(0, 4, 4))", lambda: plot.show_chunk_grid(VOL, chunks=(0, 4, 4)),
         VE, "positive"),
        ("show_chunk_grid(chunks=(4, 4))", lambda: plot.show_chunk_grid(VOL, chunks=(4, 4)), VE,
         "one entry per axis"),
        ("show_chunk_grid(chunks=5)", lambda: plot.show_chunk_grid(VOL, chunks=5), TV,
         "one entry per axis"),
        ("show_chunk_grid(chunks=('a', 4, 4))",
         lambda: plot.show_chunk_grid(VOL, chunks=("a", 4, 4)), TV, "chunk sizes"),
        ("show_chunk_grid(chunks=(4.5, 4, 4))",
         lambda: plot.show_chunk_grid(VOL, chunks=(4.5, 4, 4)), TV, "chunk sizes"),
        ("label_colours(None)", lambda: plot.label_colours(None), TE, "integer label"),
        ("label_colours('abc')", lambda: plot.label_colours("abc"), TE, "integer label"),
        ("label_colours(<negative ids>)", lambda: plot.label_colours(np.array([[-1, 2]])), VE,
         "negative"),
        ("label_colours(<float ids>)", lambda: plot.label_colours(np.array([[0.5, 1.0]])), TE,
         "integer label"),
        # -- data
        ("fetch(None)", lambda: data.fetch(None), VE, "choose one of"),
        ("fetch('HOA_HEART')", lambda: data.fetch("HOA_HEART"), VE, "choose one of"),
        ("fetch(['hoa_heart'])", lambda: data.fetch(["hoa_heart"]), VE, "choose one of"),
        ("load_heart(None)", lambda: data.load_heart(None), VE, "'zarr', 'numpy' or 'xarray'"),
        ("load_heart('ZARR')", lambda: data.load_heart("ZARR"), VE, "'zarr', 'numpy' or 'xarray'"),
        ("load_heart(['zarr'])", lambda: data.load_heart(["zarr"]), VE,
         "'zarr', 'numpy' or 'xarray'"),
    ]
    return c
