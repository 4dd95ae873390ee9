"""The shared plotting module draws decodable PNGs of the expected kind, and says what to install if needed."""

import builtins

import pytest

pytest.importorskip("matplotlib")


def test_recall_curves_and_label_bars_write_pngs(tmp_path):
    from PIL import Image

    from mmtools.plotting import label_bars, recall_curves

    curves = tmp_path / "recall.png"
    recall_curves(curves, {"a t2i": {1: 0.2, 5: 0.6, 10: 0.8}, "b t2i": {1: 0.4, 5: 0.7, 10: 0.9}})
    bars = tmp_path / "bars.png"
    label_bars(bars, {"text": {"mát": 0.5, "wifi": 0.9}, "both": {"mát": 0.7, "wifi": 0.95}})
    for path in (curves, bars):
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width > 300 and image.height > 200
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bars.png", "recall.png"]  # no temporaries left


def test_missing_matplotlib_is_an_install_hint(tmp_path, monkeypatch):
    import sys

    from mmtools import plotting
    from mmtools.errors import MissingDependencyError

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    for name in [m for m in sys.modules if m.startswith("matplotlib")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(MissingDependencyError) as caught:
        plotting.recall_curves(tmp_path / "x.png", {"a": {1: 0.5}})
    assert "mmtools[plot]" in caught.value.hint
