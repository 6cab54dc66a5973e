"""The Colab install logic and the notebooks rendered for Colab/Jupyter."""

from __future__ import annotations

import pytest

from data_helpers import colab, notebooks


def test_restart_required_when_an_imported_package_changes(monkeypatch):
    versions = {"numpy": "2.1.3", "matplotlib": "3.10.0"}
    calls = []
    monkeypatch.setattr(colab, "loaded_distributions", lambda: dict(versions))
    monkeypatch.setattr(colab, "_run_pip", lambda args: (calls.append(args), versions.update(numpy="2.5.5")))
    monkeypatch.setattr(colab, "_version", lambda d: versions[d])
    with pytest.raises(colab.RestartRequired, match=r"(?s)numpy 2\.1\.3 -> 2\.5\.5.*Restart the session"):
        colab.install("git+https://example.org/book@v1", extras=["ome"])
    assert calls == [["zarr-bioimaging-book[ome] @ git+https://example.org/book@v1"]]


def test_no_restart_when_nothing_imported_changed(monkeypatch, capsys):
    versions = {"numpy": "2.1.3"}
    calls = []
    monkeypatch.setattr(colab, "loaded_distributions", lambda: dict(versions))
    monkeypatch.setattr(colab, "_run_pip", lambda args: calls.append(args))
    monkeypatch.setattr(colab, "_version", lambda d: versions[d])
    colab.install("/tmp/book.whl", extras=["msi"])
    # msi comes without its caps: a second, --no-deps install
    assert calls == [["/tmp/book.whl[pyramids]"], ["--no-deps", "multiscale-spatial-image==2.1.0"]]
    assert "Ready" in capsys.readouterr().out


def test_unknown_extra_is_named(monkeypatch):
    monkeypatch.setattr(colab, "_run_pip", lambda args: pytest.fail("pip must not run"))
    with pytest.raises(ValueError, match="unknown extras.*'omezarr'.*the book defines"):
        colab.install("x", extras=["omezarr"])


def test_pip_failure_shows_pips_own_lines(monkeypatch):
    monkeypatch.setattr(colab, "loaded_distributions", lambda: {})

    def failing_pip(args):  # the real runner, on a requirement that cannot exist
        colab._run_pip_locked(["--no-index", "zarr-bioimaging-book-does-not-exist==0"])

    monkeypatch.setattr(colab, "_run_pip", failing_pip)
    # pip's own last lines are in the message (here: no such package, or no pip at all)
    with pytest.raises(RuntimeError, match=r"(?s)pip failed \(exit 1\); its last lines:\n.*(No matching distribution|No module named pip).*Fix:"):
        colab.install("x", extras=[])


def test_plain_markdown_leaves_no_myst():
    text = """Intro {glue:text}`speed_mb:.1f` MB/s {cite}`a,b` and {cite:p}`a`.

````{exercise-start}
:label: ex-1
````

Do it.

````{exercise-end}
````

````{solution-start} ex-1
:class: dropdown
````

```{admonition} Careful
:class: warning
Body.
```
"""
    out = notebooks.plain_markdown(text, {"a": "(Miles 2023)", "b": "(Moore et al. 2021)"})
    assert "**speed_mb** MB/s (Miles 2023; Moore et al. 2021) and (Miles 2023)." in out
    assert "**Exercise**" in out and "**Solution**" in out and "**Careful**" in out
    assert "{" not in out and "````" not in out and ":label:" not in out and ":class:" not in out


def test_install_cell_rewrite_keeps_tags(tmp_path, monkeypatch):
    md = tmp_path / "chunking.md"
    md.write_text('# T\n\n```{code-cell} ipython3\n:tags: [remove-cell]\n\nimport sys\nif "google.colab" in sys.modules:\n    pass\n```\n')
    assert notebooks.rewrite_install_cell(md)
    text = md.read_text()
    assert ":tags: [remove-cell]\n\n# Colab only" in text
    assert notebooks.install_cell("chunking") in text
    assert not notebooks.rewrite_install_cell(md)  # idempotent
