"""``pyopt demo schedules``: every learning-rate schedule of :mod:`pyopt.schedules` driving the same SGD with
momentum on the same MLP: the learning-rate curves, and the training and validation loss each one gives."""
import numpy as np

from pyopt import optim, schedules
from pyopt.demo import data as datasets
from pyopt.demo._common import progress_bar, pyplot, save, steps_or
from pyopt.demo.mlp import MLP, train

LR0 = 0.5
MOMENTUM = 0.9


def make_schedules(total):
    """(label, the scheduler classes it uses, factory(optimizer) -> scheduler or None) for every schedule of
    :mod:`pyopt.schedules`, sized to ``total`` steps."""
    S = schedules
    warm = max(1, total // 10)
    gamma = 0.01 ** (1.0 / total)  # ends at 1% of lr0
    return (
        ("constant", (), lambda opt: None),
        ("StepLR", (S.StepLR,), lambda opt: S.StepLR(opt, step_size=max(1, total // 3), gamma=0.3)),
        ("MultiStepLR", (S.MultiStepLR,), lambda opt: S.MultiStepLR(
            opt, milestones=sorted({max(1, total // 2), max(2, 3 * total // 4)}), gamma=0.1)),
        ("ExponentialLR", (S.ExponentialLR,), lambda opt: S.ExponentialLR(opt, gamma=gamma)),
        ("InverseTimeLR", (S.InverseTimeLR,), lambda opt: S.InverseTimeLR(opt, decay_rate=9.0 / total)),
        ("CosineAnnealingLR", (S.CosineAnnealingLR,), lambda opt: S.CosineAnnealingLR(opt, T_max=total)),
        ("LinearLR (decay)", (S.LinearLR,), lambda opt: S.LinearLR(opt, start_factor=1.0, end_factor=0.01,
                                                                   total_iters=total)),
        ("LinearWarmup", (S.LinearWarmup,), lambda opt: S.LinearWarmup(opt, warmup_steps=warm)),
        ("warmup + cosine (Sequential)", (S.SequentialLR, S.LinearWarmup, S.CosineAnnealingLR),
         lambda opt: S.SequentialLR(opt, [S.LinearWarmup(opt, warmup_steps=warm),
                                          S.CosineAnnealingLR(opt, T_max=max(1, total - warm))],
                                    milestones=[warm])),
        ("warmup x exponential (Chained)", (S.ChainedScheduler, S.LinearWarmup, S.ExponentialLR),
         lambda opt: S.ChainedScheduler([S.LinearWarmup(opt, warmup_steps=warm), S.ExponentialLR(opt, gamma=gamma)])),
    )


def run(out, *, seed=0, steps=None, tiny=False, progress=True, dataset="auto"):
    """Trains with each schedule; writes ``schedules.png``; returns the lr curve and losses per schedule."""
    plt = pyplot()
    steps = steps_or(steps, 600, 40, tiny)
    data = datasets.load(dataset, rng=seed, limit=400 if tiny else None)
    hidden = (32,) if tiny else (128, 128)
    table = make_schedules(steps)
    results = {}
    with progress_bar(progress) as bar:
        task = bar.add_task(f"schedules on {data.name}", total=steps * len(table))
        for label, classes, factory in table:
            bar.update(task, description=f"schedules: {label[:18]}")
            model = MLP((data.features, *hidden, data.classes), norm="layer", init="he_normal", rng=seed)
            opt = optim.SGD(model.params, lr=LR0, momentum=MOMENTUM)
            scheduler = factory(opt)
            history = train(model, opt, data, steps=steps, batch_size=32, rng=np.random.default_rng(seed + 1),
                            scheduler=scheduler, on_step=lambda: bar.advance(task))
            history.update(classes=[c.__name__ for c in classes], initial_train_loss=history["train_loss"][0],
                           final_train_loss=history["train_loss"][-1],
                           final_val_loss=history["val_loss"][-1],
                           final_val_accuracy=history["val_accuracy"][-1])
            results[label] = history

    fig, (ax_lr, ax_loss, ax_val) = plt.subplots(1, 3, figsize=(16, 4.8))
    colors = plt.get_cmap("tab10").colors
    for (label, h), color in zip(results.items(), colors):
        style = "--" if label == "constant" else "-"
        ax_lr.plot(np.arange(len(h["lr"])), h["lr"], style, color=color)
        ax_loss.plot(h["step"], h["train_loss"], style, color=color, label=label)
        ax_val.plot(h["step"], h["val_loss"], style, color=color,
                    label=f"{label}: {100 * h['final_val_accuracy']:.1f}%")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_title(f"learning rate (SGD, momentum {MOMENTUM}, lr0 {LR0})")
    ax_loss.set_title("training loss (full training set)")
    ax_val.set_title("validation loss (final accuracy in the legend)")
    for ax in (ax_loss, ax_val):
        ax.set_yscale("log")
        ax.set_ylabel("cross-entropy")
        ax.legend(fontsize=7, loc="upper right")
    for ax in (ax_lr, ax_loss, ax_val):
        ax.set_xlabel("optimizer step")
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(f"{data.name}: MLP {data.features}-{'-'.join(map(str, hidden))}-{data.classes} with LayerNorm, "
                 f"{steps} steps, batch 32, the same start for every schedule")
    fig.tight_layout()
    path = save(fig, out, "schedules.png")
    return dict(files=[path], dataset=data.name, steps=steps, schedules=results)
