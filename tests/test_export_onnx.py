"""--format onnx (#27), what only ONNX has: a missing extra and a failing check publish nothing.
The accuracy of model.onnx in ONNX Runtime alone, a folder-trained model's input size and a kill
while writing are test_export_formats.py's, with the other formats."""

from __future__ import annotations

from clicalls import one_line_error, zoo_cli

from zoo.errors import ZooError
from zoo.export import onnx as zoo_onnx


def test_without_the_onnx_extra_export_is_one_line_and_writes_nothing(tiny_runs, tmp_path, monkeypatch):
    import importlib.util

    from zoo.export import request

    real = importlib.util.find_spec
    monkeypatch.setattr(request.importlib.util, "find_spec", lambda name, *a: None if name == "tf2onnx" else real(name, *a))
    base = tmp_path / "exports"
    line = one_line_error(zoo_cli("export", tiny_runs("softmax").path, base, "--format", "saved_model,onnx"))
    assert line == "Error: --format onnx needs tf2onnx: pip install 'keras-zoo[onnx]'"
    assert not base.exists()


def test_a_failing_onnx_check_publishes_no_version(tiny_runs, tmp_path, monkeypatch):
    run, base = tiny_runs("softmax"), tmp_path / "exports"

    def fails(path, *args, **kwargs):
        assert path.is_file()  # the file was written, in the temporary
        raise ZooError("--format onnx: probabilities differ from Keras' by up to 0.5 (tolerance 0.0001)")

    monkeypatch.setattr(zoo_onnx, "check", fails)
    line = one_line_error(zoo_cli("export", run.path, base, "--format", "onnx"))
    assert "--format onnx: probabilities differ" in line
    assert list(base.iterdir()) == []  # no version (not even the SavedModel), no temporary
    # The real check, with a tolerance nothing meets, names the check and by how much.
    monkeypatch.undo()
    monkeypatch.setattr(zoo_onnx, "TOLERANCE", {"float32": -1.0})
    line = one_line_error(zoo_cli("export", run.path, base, "--format", "onnx"))
    assert "--format onnx: probabilities differ from Keras' by up to " in line and "(tolerance -1)" in line
    assert list(base.iterdir()) == []
