"""``pyopt demo init``: why the initializers of :mod:`pyopt.init` exist, on a 20-layer network of width 64.

Variance of the activations (each hidden block's output) and of the gradients (the cross-entropy gradient
arriving at each block's output), layer by layer, for one batch of real data and five initializations: naive
normals of standard deviation 1 and 0.01, LeCun (:math:`1/n_\\text{in}`), Xavier (:math:`2/(n_\\text{in} +
n_\\text{out})`) and He (:math:`2/n_\\text{in}`); with tanh and ReLU; without normalization, with BatchNorm and
with LayerNorm (pyopt's kernels).  Then the same ReLU network trained with SGD and momentum from each start.
"""
import numpy as np

from pyopt import optim
from pyopt.demo import data as datasets
from pyopt.demo._common import progress_bar, pyplot, save, steps_or
from pyopt.demo.mlp import MLP, train

INITS = {  # label: pyopt.init name or the standard deviation of a naive normal
    "naive std 1": 1.0,
    "naive std 0.01": 0.01,
    "LeCun": "lecun_normal",
    "Xavier": "xavier_normal",
    "He": "he_normal",
}
TRAINED = ("naive std 1", "naive std 0.01", "Xavier", "He")
COLORS = dict(zip(INITS, ["C3", "C1", "C2", "C0", "C4"]))
STYLES = {"Xavier": "s--"}  # Xavier == LeCun when fan_in == fan_out (every hidden layer here): dashed to show both
NORM_LABELS = {"none": "no normalization", "batch": "BatchNorm", "layer": "LayerNorm"}
LR, MOMENTUM = 0.01, 0.9


def layer_variances(data, *, depth, width, activation, norm, init, batch, seed):
    """Per hidden block: the variance of its output and of the loss gradient w.r.t. it (float64, one batch)."""
    model = MLP((data.features,) + (width,) * depth + (data.classes,), activation=activation, norm=norm,
                init=init, rng=seed, dtype=np.float64)
    acts, grads = [], []
    with np.errstate(over="ignore", invalid="ignore"):
        model.loss_and_grad(data.x_train[:batch], data.y_train[:batch], record_activations=acts,
                            record_grads=grads)
        return dict(activation=[float(np.var(a)) for a in acts], gradient=[float(np.var(g)) for g in grads])


def run(out, *, seed=0, steps=None, tiny=False, progress=True, dataset="auto"):
    """Measures the variances, trains the ReLU network from each start; writes ``init_variance.png``,
    ``init_normalization.png`` and ``init_training.png``; returns every curve."""
    plt = pyplot()
    steps = steps_or(steps, 150, 20, tiny)
    data = datasets.load(dataset, rng=seed, limit=400 if tiny else None)
    depth, width = (6, 16) if tiny else (20, 64)
    variance_runs = [(a, n, i) for a in ("tanh", "relu") for n in NORM_LABELS for i in INITS]
    training_runs = [(n, i) for n in NORM_LABELS for i in TRAINED]
    variances = {a: {n: {} for n in NORM_LABELS} for a in ("tanh", "relu")}
    training = {n: {} for n in NORM_LABELS}
    with progress_bar(progress) as bar:
        task = bar.add_task("init: variance per layer", total=len(variance_runs) + steps * len(training_runs))
        for activation, norm, label in variance_runs:
            variances[activation][norm][label] = layer_variances(
                data, depth=depth, width=width, activation=activation, norm=norm, init=INITS[label],
                batch=min(512, len(data.y_train)), seed=seed)
            bar.advance(task)
        for norm, label in training_runs:
            bar.update(task, description=f"init: train {label}, {norm} norm")
            model = MLP((data.features,) + (width,) * depth + (data.classes,), norm=norm, init=INITS[label],
                        rng=seed)
            opt = optim.SGD(model.params, lr=LR, momentum=MOMENTUM)
            with np.errstate(over="ignore", invalid="ignore"):
                history = train(model, opt, data, steps=steps, batch_size=64, rng=np.random.default_rng(seed + 1),
                                evaluations=15, on_step=lambda: bar.advance(task))
            bar.update(task, completed=len(variance_runs) + steps * (training_runs.index((norm, label)) + 1))
            history.update(initial_train_loss=history["train_loss"][0], final_train_loss=history["train_loss"][-1])
            training[norm][label] = history

    layers = np.arange(1, depth + 1)

    def panel(ax, curves, key, title, normalized=False):
        for label, v in curves.items():
            ax.plot(layers, np.maximum(v[key], 1e-300), STYLES.get(label, "o-"), markersize=3, color=COLORS[label],
                    label=label + (" (= LeCun: equal fans)" if label == "Xavier" else ""))
        ax.set_yscale("log")
        if normalized and key == "activation":
            ax.set_ylim(1e-3, 10)  # a wide fixed scale shows how flat the curves are
        ax.set_xlabel("layer")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)

    what = {"activation": "Var[activation]", "gradient": "Var[dLoss/d activation]"}
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    for row, activation in zip(axes, ("tanh", "relu")):
        for ax, key in zip(row, what):
            panel(ax, variances[activation]["none"], key, f"{activation}, no normalization: {what[key]}")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(f"{depth} layers of width {width} on a batch of {data.name}: He keeps ReLU's variance, Xavier "
                 "keeps tanh's within 20x, naive scales explode or vanish")
    fig.tight_layout()
    files = [save(fig, out, "init_variance.png")]

    fig, axes = plt.subplots(2, 4, figsize=(18, 8))
    for row, norm in zip(axes, ("batch", "layer")):
        for ax, (activation, key) in zip(row, [(a, k) for a in ("tanh", "relu") for k in what]):
            panel(ax, variances[activation][norm], key, f"{activation}, {NORM_LABELS[norm]}: {what[key]}",
                  normalized=True)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(f"The same network with a {NORM_LABELS['batch']} or {NORM_LABELS['layer']} layer before each "
                 "activation: every initialization now gives the same activation variance at every depth")
    fig.tight_layout()
    files.append(save(fig, out, "init_normalization.png"))

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6), sharey=True)
    for ax, norm in zip(axes, NORM_LABELS):
        for label, h in training[norm].items():
            status = " (diverged)" if h["diverged"] else f": {h['final_train_loss']:.2f}"
            ax.plot(h["step"], h["train_loss"], "o-", markersize=3, color=COLORS[label], label=label + status)
        ax.set_yscale("log")
        ax.set_ylim(0.2, 20)
        ax.set_xlabel("optimizer step")
        ax.set_title(f"ReLU, {NORM_LABELS[norm]}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("training loss (cross-entropy)")
    fig.suptitle(f"Training the {depth}-layer ReLU network (SGD, lr {LR}, momentum {MOMENTUM}, batch 64) from "
                 "each initialization")
    fig.tight_layout()
    files.append(save(fig, out, "init_training.png"))
    return dict(files=files, dataset=data.name, depth=depth, width=width, steps=steps, variances=variances,
                training=training)
