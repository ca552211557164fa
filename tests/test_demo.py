"""``pyopt demo``: every demo runs at tiny size, writes real PNGs, and its numbers say what its pictures claim."""
import inspect
import struct
import sys

import numpy as np
import pytest

import pyopt
from pyopt import demo
from pyopt.demo import data as demo_data
from pyopt.cli import main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def check_png(path):
    """A PNG of a readable size: the signature, an IHDR of at least 400 x 200 pixels, and some content."""
    with open(path, "rb") as fh:
        blob = fh.read()
    assert blob[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert blob[12:16] == b"IHDR"
    width, height = struct.unpack(">II", blob[16:24])
    assert width >= 400 and height >= 200, f"{path} is {width} x {height}"
    assert 10_000 < len(blob) < 1_000_000, f"{path} has {len(blob)} bytes"


def run_tiny(name, tmp_path, **kwargs):
    result = demo.run(name, str(tmp_path), tiny=True, progress=False, **kwargs)
    assert result["files"]
    for path in result["files"]:
        assert path.startswith(str(tmp_path))
        check_png(path)
    return result


def test_optimizers_every_rule_lowers_the_loss(tmp_path):
    result = run_tiny("optimizers", tmp_path)
    runs = result["optimizers"]
    assert list(runs) == ["SGD", "momentum", "Nesterov", "AdaGrad", "RMSProp", "Adam", "AdamW"]
    for label, h in runs.items():
        assert not h["diverged"], label
        assert h["final_train_loss"] < 0.8 * h["initial_train_loss"], label
        assert h["final_val_loss"] < h["val_loss"][0], label
        assert len(h["step"]) == len(h["train_loss"]) == len(h["val_loss"]) and h["step"][-1] == result["steps"]
        assert h["samples_per_s"] > 0 and h["step_gb_s"] > 0
    assert runs["Nesterov"]["hparams"]["nesterov"] and runs["momentum"]["hparams"]["momentum"] == 0.9


def test_schedules_cover_every_schedule_and_apply_their_closed_form(tmp_path):
    result = run_tiny("schedules", tmp_path)
    runs = result["schedules"]
    used = {name for h in runs.values() for name in h["classes"]}
    every = {name for name, obj in vars(pyopt.schedules).items()
             if inspect.isclass(obj) and issubclass(obj, pyopt.schedules.LRScheduler)
             and obj is not pyopt.schedules.LRScheduler}
    assert every <= used, f"schedules without a curve: {every - used}"
    steps = result["steps"]
    lr0 = runs["constant"]["lr"][0]
    assert runs["constant"]["lr"] == [lr0] * steps
    cosine = [pyopt.schedules.cosine_annealing_lr(t, lr0, steps) for t in range(steps)]
    np.testing.assert_allclose(runs["CosineAnnealingLR"]["lr"], cosine, rtol=1e-12)
    assert runs["LinearWarmup"]["lr"][0] == 0.0 and runs["LinearWarmup"]["lr"][-1] == lr0
    for label, h in runs.items():
        assert len(h["lr"]) == steps, label
        assert h["final_train_loss"] < h["initial_train_loss"], label


def test_trajectories_show_the_lecture_claims(tmp_path):
    result = run_tiny("trajectories", tmp_path)
    valley, rosen = result["problems"]["valley"], result["problems"]["rosenbrock"]
    assert set(valley) == {"0.01", "0.1", "0.4"}
    # lr too high diverges; below 2/L it converges
    assert valley["0.4"]["gd"]["diverged"] and valley["0.4"]["momentum"]["diverged"]
    assert valley["0.1"]["gd"]["final"] < 0.2 * valley["0.1"]["gd"]["initial"]
    # momentum helps on the valley at a small rate
    assert valley["0.01"]["momentum"]["final"] < valley["0.01"]["gd"]["final"] < valley["0.01"]["gd"]["initial"]
    assert rosen["0.001"]["momentum"]["final"] < rosen["0.001"]["gd"]["final"] < rosen["0.001"]["gd"]["initial"]
    for problem in (valley, rosen):
        for runs in problem.values():
            for r in runs.values():
                assert len(r["values"]) == r["steps"] + 1 == len(r["path"])
                assert r["diverged"] or r["final"] < r["initial"]


def test_init_variances_and_normalization(tmp_path):
    result = run_tiny("init", tmp_path)
    assert len(result["files"]) == 3
    relu = result["variances"]["relu"]
    act = {label: np.array(v["activation"]) for label, v in relu["none"].items()}
    assert len(act["He"]) == result["depth"]
    assert 0.1 < act["He"][-1] / act["He"][0] < 10            # He keeps ReLU's variance
    assert act["naive std 0.01"][-1] < 1e-10 * act["naive std 0.01"][0]   # vanishes
    assert act["naive std 1"][-1] > 1e3 * act["naive std 1"][0]           # explodes
    assert act["LeCun"][-1] < act["He"][-1]                   # halves per ReLU layer without the gain of 2
    tanh = np.array(result["variances"]["tanh"]["none"]["Xavier"]["activation"])
    assert 0.01 < tanh[-1] / tanh[0] <= 1.0
    for norm in ("batch", "layer"):  # normalization: the same variance at the last layer whatever the init
        last = [v["activation"][-1] for v in relu[norm].values()]
        assert max(last) < 3 * min(last), norm
    for norm, runs in result["training"].items():
        for label in ("He",) + (("naive std 0.01", "naive std 1") if norm == "batch" else ()):
            h = runs[label]
            assert not h["diverged"] and h["final_train_loss"] < h["initial_train_loss"], (norm, label)


def test_linesearch_budget(tmp_path):
    result = run_tiny("linesearch", tmp_path)
    methods = result["methods"]
    assert set(methods) == {"gradient descent + Wolfe", "L-BFGS + Wolfe", "SGD, batch 1", "SGD, batch 16"}
    for label, c in methods.items():
        assert max(c["sample_gradients"]) <= result["budget"], label
        assert c["final_train_loss"] < 0.5 * c["initial_train_loss"], label
        assert c["final_test_error"] < 0.5, label
    assert methods["gradient descent + Wolfe"]["evaluations"] <= result["passes"]
    assert result["optimum"]["train_loss"] <= min(c["final_train_loss"] for c in methods.values()) + 1e-12


def hide_sklearn(monkeypatch):
    for name in [m for m in sys.modules if m == "sklearn" or m.startswith("sklearn.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn now raises ImportError


def test_spirals_when_scikit_learn_is_absent(monkeypatch):
    hide_sklearn(monkeypatch)
    data = demo_data.load("auto", rng=0)
    assert data.name == "spirals" and data.features == 2 and data.classes == 3
    x = np.concatenate([data.x_train, data.x_val, data.x_test])
    assert len(x) == 1200 and x.dtype == np.float32
    np.testing.assert_allclose(data.x_train.mean(axis=0), 0, atol=1e-6)
    np.testing.assert_allclose(data.x_train.std(axis=0), 1, atol=1e-5)
    with pytest.raises(ImportError):
        demo_data.load("digits")


def test_digits_standardized():
    pytest.importorskip("sklearn")
    data = demo_data.load("digits", rng=0)
    assert data.name == "digits" and data.features == 64 and data.classes == 10
    assert len(data.y_train) + len(data.y_val) + len(data.y_test) == 1797
    assert np.abs(data.x_train.mean(axis=0)).max() < 1e-5
    with pytest.raises(ValueError, match="dataset"):
        demo_data.load("mnist")


def test_optimizers_demo_on_forced_spirals(tmp_path, monkeypatch):
    hide_sklearn(monkeypatch)
    result = run_tiny("optimizers", tmp_path, dataset="auto")
    assert result["dataset"] == "spirals"
    for label, h in result["optimizers"].items():
        assert h["final_train_loss"] < h["initial_train_loss"], label


def test_cli_demo_writes_and_says_where(tmp_path, capsys):
    assert main(["demo", "trajectories", "--tiny", "--quiet", "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    path = tmp_path / "out" / "trajectories.png"
    assert f"wrote {path}" in printed
    check_png(path)


def test_cli_demo_without_matplotlib(tmp_path, capsys, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["demo", "trajectories", "--tiny", "--quiet", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "matplotlib" in err and "pip install" in err
    assert not list(tmp_path.iterdir())


def test_cli_demo_rejects_bad_arguments(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "trajectories", "--steps", "0"])
    with pytest.raises(SystemExit):
        main(["demo", "nonsense"])
    with pytest.raises(ValueError, match="unknown demo"):
        demo.run("nonsense", "unused")
