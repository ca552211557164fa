"""``pyopt demo optimizers``: one small MLP (with pyopt's norms) trained from the same initial weights by SGD,
momentum, Nesterov, AdaGrad, RMSProp, Adam and AdamW; training and validation loss per optimizer, and the
throughput each reached (training samples/s, and the optimizer step's GB/s from its declared bytes)."""
import numpy as np

from pyopt import optim
from pyopt.demo import data as datasets
from pyopt.demo._common import progress_bar, pyplot, save, steps_or
from pyopt.demo.mlp import MLP, train

# (label, class, keyword arguments): learning rates of the usual magnitude for each rule on this problem
OPTIMIZERS = (
    ("SGD", "SGD", dict(lr=0.1)),
    ("momentum", "SGD", dict(lr=0.02, momentum=0.9)),
    ("Nesterov", "SGD", dict(lr=0.02, momentum=0.9, nesterov=True)),
    ("AdaGrad", "Adagrad", dict(lr=0.05)),
    ("RMSProp", "RMSprop", dict(lr=1e-3)),
    ("Adam", "Adam", dict(lr=1e-3)),
    ("AdamW", "AdamW", dict(lr=1e-3, weight_decay=0.05)),
)
NORM_NAMES = {None: "no normalization", "none": "no normalization", "layer": "LayerNorm", "batch": "BatchNorm"}
COLORS = dict(zip([o[0] for o in OPTIMIZERS], ["C0", "C1", "C2", "C3", "C4", "C5", "C6"]))


def run(out, *, seed=0, steps=None, tiny=False, progress=True, dataset="auto", norm="layer"):
    """Trains the MLP with every optimizer; writes ``optimizers.png``; returns the metrics per optimizer."""
    plt = pyplot()
    steps = steps_or(steps, 800, 40, tiny)
    data = datasets.load(dataset, rng=seed, limit=400 if tiny else None)
    hidden = (32,) if tiny else (128, 128)
    batch_size = 32
    results = {}
    with progress_bar(progress) as bar:
        task = bar.add_task(f"optimizers on {data.name}", total=steps * len(OPTIMIZERS))
        for label, cls, kwargs in OPTIMIZERS:
            bar.update(task, description=f"optimizers: {label}")
            model = MLP((data.features, *hidden, data.classes), norm=norm, init="he_normal", rng=seed)
            opt = getattr(optim, cls)(model.params, **kwargs)
            history = train(model, opt, data, steps=steps, batch_size=batch_size,
                            rng=np.random.default_rng(seed + 1), on_step=lambda: bar.advance(task))
            history.update(optimizer=cls, hparams=kwargs, initial_train_loss=history["train_loss"][0],
                           final_train_loss=history["train_loss"][-1], final_val_loss=history["val_loss"][-1],
                           final_val_accuracy=history["val_accuracy"][-1])
            results[label] = history
    numel = MLP((data.features, *hidden, data.classes), norm=norm, rng=seed).numel

    fig, (ax_train, ax_val, ax_speed) = plt.subplots(1, 3, figsize=(15, 4.6), width_ratios=(1, 1, 0.8))
    for label, h in results.items():
        ax_train.plot(h["step"], h["train_loss"], color=COLORS[label], label=label)
        ax_val.plot(h["step"], h["val_loss"], color=COLORS[label],
                    label=f"{label}: {100 * h['final_val_accuracy']:.1f}% val acc")
    for ax, title in ((ax_train, "training loss (full training set)"), (ax_val, "validation loss")):
        ax.set_yscale("log")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("cross-entropy")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    ax_train.legend(fontsize=8)
    ax_val.legend(fontsize=8)
    labels = list(results)
    speeds = [results[k]["samples_per_s"] for k in labels]
    bars = ax_speed.barh(labels, speeds, color=[COLORS[k] for k in labels])
    for rect, k in zip(bars, labels):
        ax_speed.text(rect.get_width(), rect.get_y() + rect.get_height() / 2,
                      f" step {results[k]['step_us']:.0f} us, {results[k]['step_gb_s']:.2f} GB/s",
                      va="center", fontsize=8)
    ax_speed.set_xlim(0, 1.6 * max(speeds))
    ax_speed.invert_yaxis()
    ax_speed.set_xlabel("training samples/s (forward + backward + step)")
    ax_speed.set_title(f"throughput ({numel:,} params, batch {batch_size})")
    fig.suptitle(f"{data.name}: MLP {data.features}-{'-'.join(map(str, hidden))}-{data.classes} with "
                 f"{NORM_NAMES[norm]}, He init, same start for every optimizer, {steps} steps")
    fig.tight_layout()
    path = save(fig, out, "optimizers.png")
    return dict(files=[path], dataset=data.name, steps=steps, optimizers=results)
