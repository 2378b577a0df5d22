"""Sparsity allocation on four MNIST networks of the Keras examples' kinds.

Issue 14: which allocation should `AnnealedPruning` use by default? For each
network (a small convnet with Dropout as in Keras' mnist_convnet example, an
MLP with Dropout, a residual CNN with BatchNormalization, a depthwise-
separable convnet) and seed, trains:

- `published`: the network as written (its own Dropout, if any);
- `none`: Dropout removed, nothing added;
- `<allocation>-s<sparsity>`: Dropout removed, every layer wrapped, and
  `AnnealedPruning(FSA(s, end_fraction=0.5), allocation=...)`;
- `lamp-s0.9-<schedule>`: the same at 90% with LAMP, on other plans
  (`SCHEDULES`: linear or cubic instead of FSA's front-loaded removal,
  ending earlier, or starting later with `begin_fraction`), and
  `lamp-s0.9-set` with SET drop-and-regrow once 90% is reached, and
  `lamp-s0.9-linear-late-noise0.5` with half of the kept weights removed
  for one step at every step (noise injection), and
  `lamp-s0.9-linear-late-dropconnect<r>` with DropConnect at rate `r` on the
  Dense layers' kept weights (`prune_model(drop_connect={Dense: r})`), and
  `...-dropconnect0.3-conv0.1` with rate 0.1 on the convolutions as well,
  and `...-dropconnect0.3-dense<d>` with the Dense layers pinned at sparsity
  `d` (`PerLayer(..., rest="lamp")`), so the convolutions keep more (or,
  for `d` below 90%, less), and
  `...-dropconnect0.3-groups<g>` with `g` draws of the noise per batch
  (`drop_connect_groups=g`: example i gets draw i mod g), and
  `...-gaussian<r>` with the noise of rate `r` drawn as normal noise per
  example and weight (`drop_connect_noise="gaussian"`), and
  `...-gaussian0.5-conv0.1` with that noise at rate 0.1 on the convolutions
  too (each output position drawn apart: noise on the features the
  published network's Dropout acted on);
- `lamp-s0.9-linear-early-{rigl,set}-dropconnect0.3`: 90% reached by 40%
  of training, then RigL's (by gradient) or SET's (at random) drop-and-regrow
  until 75%, with DropConnect 0.3 on the Dense layers (dynamic sparsity);
- `lamp-s0.9-linear-late-with-dropout`: the same plan with the published
  Dropout kept (a hybrid, not a replacement);
- `budget`: the published network, Dropout kept, trained as `published`,
  then fine-tuned as many epochs again with the callback and an accuracy
  budget of 0.1 point against its own validation score (`max_drop=0.001`,
  `reference=` that score; a linear ramp to 0.95 over 80% of the fine-tuning,
  as a ceiling);
- `budget-steps`: the same, on a staircase instead of a ramp: half of the
  weights left go at the start of each fine-tuning epoch after the first
  (`ConstantRate(0.5, interval=<one epoch>, relative_to="remaining")`: 50%,
  75%, 87.5%, 93.75%, capped at 95%), so the budget judges each sparsity
  after an epoch of recovery, not in the middle of a removal.

Data: training on the first `--train` of the first 55,000 MNIST training
images; every run records its accuracy on the validation split (the last
5,000 training images: choices are made there) and on the test set (quoted
for the finalists only). One results file, written after every run:
benchmarks/results/allocation.json; `--report` writes allocation.md and
allocation.png from it.

    python benchmarks/allocation.py --data ../shared/datasets/mnist.npz
    python benchmarks/allocation.py --data ../shared/datasets/mnist.npz --resume \
        --networks convnet --variants 'erk-*' --seeds 1 2
    python benchmarks/allocation.py --report
"""

import argparse
import fnmatch
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
ALLOCATIONS = ("uniform", "global", "erk", "lamp")
SPARSITIES = (0.8, 0.9, 0.95)
VALIDATION = 5000
# Schedules other than FSA(s, end_fraction=0.5) for the default allocation at
# 90%: when pruning starts and ends, and how front-loaded it is. Each is a
# variant `lamp-s0.9-<name>`, chosen on the validation split like the rest.
SCHEDULES = {
    "linear": {"name": "fsa", "mu": 0.0, "end_fraction": 0.5},
    "cubic": {"name": "polynomial", "end_fraction": 0.5},
    "early": {"name": "fsa", "end_fraction": 0.25},
    "late": {"name": "fsa", "begin_fraction": 0.2, "end_fraction": 0.6},
    "cubic-late": {"name": "polynomial", "begin_fraction": 0.2, "end_fraction": 0.8},
    "linear-late": {"name": "fsa", "mu": 0.0, "begin_fraction": 0.2, "end_fraction": 0.8},
    "cubic-long": {"name": "polynomial", "end_fraction": 0.8},
    "cubic-mid": {"name": "polynomial", "begin_fraction": 0.1, "end_fraction": 0.6},
    "cubic-later": {"name": "polynomial", "begin_fraction": 0.3, "end_fraction": 0.9},
    "linear-later": {"name": "fsa", "mu": 0.0, "begin_fraction": 0.4, "end_fraction": 0.8},
}


def make_plan(plan, sparsity):
    """The schedule a `SCHEDULES` entry describes, to `sparsity`."""
    from keras_anneal import schedules

    options = dict(plan)
    kind = {"fsa": schedules.FSA, "polynomial": schedules.PolynomialDecay}[options.pop("name")]
    return kind(final_sparsity=sparsity, **options)


def describe_plan(variant):
    """The schedule of a `lamp-s0.9[-<plan>]` variant, as code reads."""
    suffix = variant[len("lamp-s0.9-"):]
    if suffix not in SCHEDULES:
        return "FSA(end_fraction=0.5)"
    options = {k: v for k, v in SCHEDULES[suffix].items() if k != "name"}
    kind = type(make_plan(SCHEDULES[suffix], 0.9)).__name__
    return f"{suffix}, {kind}(" + ", ".join(f"{k}={v}" for k, v in options.items()) + ")"


def variants():
    table = {"published": {"dropout": True}, "none": {"dropout": False}}
    for allocation in ALLOCATIONS:
        for sparsity in SPARSITIES:
            table[f"{allocation}-s{sparsity}"] = {
                "dropout": False, "allocation": allocation, "sparsity": sparsity,
            }
    for suffix, schedule in SCHEDULES.items():
        table[f"lamp-s0.9-{suffix}"] = {
            "dropout": False, "allocation": "lamp", "sparsity": 0.9, "schedule": schedule,
        }
    # Drop-and-regrow (SET) once FSA has reached 90%: the topology keeps moving.
    table["lamp-s0.9-set"] = {"dropout": False, "allocation": "lamp", "sparsity": 0.9,
                              "regrowth": {"fraction": 0.3}}
    # Noise injection on the recommended plan: half of the kept weights out
    # for one step at every step (DropConnect's mask, one per batch, not per
    # sample), until 75% of training: can pruning regularize like Dropout?
    table["lamp-s0.9-linear-late-noise0.5"] = {
        **table["lamp-s0.9-linear-late"], "frequency": 1,
        "temporary": {"fraction": 0.5, "duration": 1},
    }
    # DropConnect on the Dense layers, where the published networks had
    # Dropout: the noise in the graph, drawn anew at every step and scaled.
    for rate in (0.2, 0.3, 0.4, 0.5):
        table[f"lamp-s0.9-linear-late-dropconnect{rate}"] = {
            **table["lamp-s0.9-linear-late"], "drop_connect": rate,
        }
    # The same on the Dense layers, and lighter DropConnect on the convolutions
    # (which mnist_cnn's published network guards with Dropout(0.25)).
    table["lamp-s0.9-linear-late-dropconnect0.3-conv0.1"] = {
        **table["lamp-s0.9-linear-late-dropconnect0.3"], "conv_drop_connect": 0.1,
    }
    # The budget moved between the Dense classifier and the convolutions
    # (LAMP prunes both near 90%): the Dense layers pinned at 80% or 85% (the
    # convolutions lose more) or at 95% or 97% (they keep more), LAMP for the
    # convolutions.
    for dense in (0.8, 0.85, 0.95, 0.97):
        table[f"lamp-s0.9-linear-late-dropconnect0.3-dense{dense}"] = {
            **table["lamp-s0.9-linear-late-dropconnect0.3"], "dense_sparsity": dense,
        }
    # 4 or 16 draws of the noise per batch instead of one: a less noisy gradient,
    # closer to Wan et al.'s draw per example (and to Dropout's).
    for groups in (4, 16):
        table[f"lamp-s0.9-linear-late-dropconnect0.3-groups{groups}"] = {
            **table["lamp-s0.9-linear-late-dropconnect0.3"], "drop_connect_groups": groups,
        }
    # The noise as normal noise of the same variance, drawn per example and
    # per weight (Kingma et al. 2015's local reparameterization).
    for rate in (0.3, 0.5):
        table[f"lamp-s0.9-linear-late-gaussian{rate}"] = {
            **table["lamp-s0.9-linear-late"], "drop_connect": rate, "drop_connect_noise": "gaussian",
        }
    # The same on the convolutions, drawn per example and output position:
    # noise on the feature maps whose flattening the published Dropout drops.
    table["lamp-s0.9-linear-late-gaussian0.5-conv0.1"] = {
        **table["lamp-s0.9-linear-late-gaussian0.5"], "conv_drop_connect": 0.1,
    }
    # Dynamic sparsity at 90%: reached by 40% of training on a linear plan,
    # then the topology keeps moving until 75% (RigL's drop-and-regrow by
    # gradient, SET's at random), with DropConnect 0.3 on the Dense layer:
    # does a moving topology buy the capacity a fixed one lacks?
    early = {"name": "fsa", "mu": 0.0, "end_fraction": 0.4}
    for grow, label in (("gradient", "rigl"), ("random", "set")):
        table[f"lamp-s0.9-linear-early-{label}-dropconnect0.3"] = {
            **table["lamp-s0.9-linear-late-dropconnect0.3"], "schedule": early,
            "regrowth": {"fraction": 0.3, "grow": grow, "end_fraction": 0.75},
        }
    # The published network's Dropout kept, 90% pruned on the recommended plan
    # beside it (the hybrid: it does not count for issue 14's goal (a), which
    # replaces the Dropout; it says what 90% costs a network that keeps it).
    table["lamp-s0.9-linear-late-with-dropout"] = {**table["lamp-s0.9-linear-late"], "dropout": True}
    # Weight averaging: the optimizer keeps an exponential moving average of
    # the weights (Keras' `use_ema`, momentum 0.99: about the last 100 steps)
    # and training ends on it. Does averaging the sparse network's last steps
    # buy what its Dropout bought the dense one? The published network with
    # the same average beside it, so the average is not credited to pruning.
    table["lamp-s0.9-linear-late-dropconnect0.3-ema"] = {
        **table["lamp-s0.9-linear-late-dropconnect0.3"], "ema": 0.99,
    }
    table["published-ema"] = {**table["published"], "ema": 0.99}
    # The callback's default allocation; the budget, not 0.95, sets the sparsity.
    table["budget"] = {"dropout": True, "sparsity": 0.95, "max_drop": 0.001, "fine_tune": True}
    table["budget-steps"] = {**table["budget"], "staircase": True}
    return table


def build(network, dropout):
    """The four networks; `dropout=False` leaves their Dropout out."""
    import keras
    from keras import layers

    def maybe_dropout(rate):
        return [layers.Dropout(rate)] if dropout else []

    if network == "convnet":  # Keras' mnist_convnet example.
        return keras.Sequential([
            keras.Input((28, 28, 1)),
            layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(2),
            layers.Flatten(), *maybe_dropout(0.5), layers.Dense(10, activation="softmax"),
        ], name="convnet")
    if network == "mlp":  # Keras' mnist_mlp, narrower.
        return keras.Sequential([
            keras.Input((28, 28, 1)), layers.Flatten(),
            layers.Dense(256, activation="relu"), *maybe_dropout(0.2),
            layers.Dense(256, activation="relu"), *maybe_dropout(0.2),
            layers.Dense(10, activation="softmax"),
        ], name="mlp")
    if network == "resnet":  # Two residual blocks with BatchNormalization.
        # Momentum 0.9: with 0.99 the moving statistics lag a run this short
        # (470 steps) and validation accuracy stalls near 70%.
        def norm():
            return layers.BatchNormalization(momentum=0.9)

        inputs = keras.Input((28, 28, 1))
        x = layers.Conv2D(16, 3, padding="same", use_bias=False)(inputs)
        x = layers.Activation("relu")(norm()(x))
        x = layers.MaxPooling2D(2)(x)
        for filters in (16, 32):
            shortcut = x if x.shape[-1] == filters else layers.Conv2D(filters, 1)(x)
            y = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
            y = layers.Activation("relu")(norm()(y))
            y = layers.Conv2D(filters, 3, padding="same", use_bias=False)(y)
            y = norm()(y)
            x = layers.Activation("relu")(shortcut + y)
        x = layers.GlobalAveragePooling2D()(layers.MaxPooling2D(2)(x))
        outputs = layers.Dense(10, activation="softmax")(x)
        return keras.Model(inputs, outputs, name="resnet")
    if network == "separable":  # Depthwise and separable convolutions.
        return keras.Sequential([
            keras.Input((28, 28, 1)),
            layers.Conv2D(32, 3, activation="relu"),
            layers.DepthwiseConv2D(3, activation="relu"), layers.MaxPooling2D(2),
            layers.SeparableConv2D(64, 3, activation="relu"), layers.MaxPooling2D(2),
            layers.Flatten(), *maybe_dropout(0.25), layers.Dense(10, activation="softmax"),
        ], name="separable")
    raise ValueError(f"unknown network {network!r}")


NETWORKS = ("convnet", "mlp", "resnet", "separable")


def run(network, config, seed, data, args):
    """Trains one network variant; returns its record."""
    import keras
    from _common import EpochTimer

    import keras_anneal

    keras.backend.clear_session()  # Same layer names in every run.
    keras.utils.set_random_seed(seed)
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = data
    model = build(network, config["dropout"])
    callbacks = [EpochTimer()]
    pruned = "sparsity" in config
    fit = dict(x=x_train, y=y_train, batch_size=128, epochs=args.epochs,
               validation_data=(x_val, y_val), verbose=0)
    options = {"allocation": config["allocation"]} if "allocation" in config else {}
    if "regrowth" in config:
        options["regrowth"] = keras_anneal.Regrowth(**config["regrowth"])
        if options["regrowth"].grow == "gradient":
            options["regrowth_data"] = (x_train, y_train)
    if "temporary" in config:
        options["temporary"] = keras_anneal.TemporaryRemoval(**config["temporary"])
    if config.get("fine_tune"):  # Dense training first; then pruning, within the budget.
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        options["reference"] = model.fit(**fit).history["val_accuracy"][-1]
    if pruned:
        # A copy: a fresh optimizer, step 0.
        rates = {keras.layers.Dense: config.get("drop_connect", 0.0)}
        if "conv_drop_connect" in config:
            rates[keras.layers.Conv2D] = config["conv_drop_connect"]
        model = keras_anneal.prune_model(
            model, drop_connect=rates, drop_connect_groups=config.get("drop_connect_groups", 1),
            drop_connect_noise=config.get("drop_connect_noise", "bernoulli"))
        if "dense_sparsity" in config:  # The Dense layers pinned, the rest by the allocation.
            options["allocation"] = keras_anneal.allocation.PerLayer(
                {layer.name: config["dense_sparsity"] for layer in keras_anneal.masked_layers(model)
                 if isinstance(layer.layer, keras.layers.Dense)},
                rest=config["allocation"])
        if config.get("staircase"):  # A removal at each epoch start, judged at its end.
            schedule = keras_anneal.schedules.ConstantRate(
                rate=0.5, interval=-(-len(x_train) // 128), relative_to="remaining",
                final_sparsity=config["sparsity"])
        elif config.get("fine_tune"):  # A linear ramp: the budget is judged at each epoch end.
            schedule = keras_anneal.schedules.PolynomialDecay(
                final_sparsity=config["sparsity"], power=1, end_fraction=0.8)
        elif "schedule" in config:
            schedule = make_plan(config["schedule"], config["sparsity"])
        else:
            schedule = keras_anneal.schedules.FSA(config["sparsity"], end_fraction=0.5)
        callbacks.insert(0, keras_anneal.AnnealedPruning(
            schedule, frequency=config.get("frequency", args.frequency),
            max_drop=config.get("max_drop"), **options))
    optimizer = keras.optimizers.Adam(use_ema=True, ema_momentum=config["ema"]) if "ema" in config else "adam"
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(**fit, callbacks=callbacks)
    # Evaluated after `fit`: the masks the model ends with (a budget may have restored some).
    _, validation_accuracy = model.evaluate(x_val, y_val, batch_size=1024, verbose=0)
    _, test_accuracy = model.evaluate(x_test, y_test, batch_size=1024, verbose=0)
    report = keras_anneal.sparsity_report(model) if pruned else None
    record = {
        "network": network,
        "seed": seed,
        "validation_accuracy": float(validation_accuracy),
        "test_accuracy": float(test_accuracy),
        "sparsity": report.sparsity if report else 0.0,
        "layer_sparsity": {row.name: row.sparsity for row in report.layers} if report else {},
        "epoch_seconds": [float(t) for t in callbacks[-1].times],
        "validation_curve": [float(v) for v in history.history["val_accuracy"]],
    }
    if config.get("max_drop") is not None:
        stop = callbacks[0].budget_stop
        record["budget_stop"] = str(stop) if stop else "never left the budget"
        record["reference"] = options["reference"]
    return record


def load(path, n_train):
    from keras_anneal import load_mnist

    (x, y), (x_test, y_test) = load_mnist(path)
    x, x_test = (x[..., None] / 255.0).astype("float32"), (x_test[..., None] / 255.0).astype("float32")
    split = len(x) - VALIDATION
    return (x[:min(n_train, split)], y[:min(n_train, split)]), (x[split:], y[split:]), (x_test, y_test)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=NETWORKS)
    parser.add_argument("--variants", nargs="+",
                        default=["published", "none", "*-s0.9", "budget"],
                        help=f"names or shell patterns among: {', '.join(variants())}")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--train", type=int, default=12000, help="training images (of the first 55,000)")
    parser.add_argument("--frequency", type=int, default=10, help="optimizer steps between mask updates")
    parser.add_argument("--data", help="local mnist.npz; downloads MNIST if omitted")
    parser.add_argument("--name", default="allocation")
    parser.add_argument("--output-dir", default=os.path.join(HERE, "results"))
    parser.add_argument("--resume", action="store_true", help="keep the runs already in the results file")
    parser.add_argument("--report", action="store_true", help="only write the table and figure")
    args = parser.parse_args(argv)
    known = list(variants())
    selected = []
    for pattern in args.variants:
        selected += [n for n in known if fnmatch.fnmatch(n, pattern) and n not in selected]
    if not selected:
        parser.error(f"--variants matched none of: {', '.join(known)}")
    args.variants = selected
    return args


def summarize(results):
    """Rows of (network, variant, seeds, validation mean, test mean, test sd, sparsity, s/epoch)."""
    groups = {}
    for run in results["runs"]:
        groups.setdefault((run["network"], run["variant"]), []).append(run)
    rows = []
    for (network, variant), runs in groups.items():
        val = [100 * r["validation_accuracy"] for r in runs]
        test = [100 * r["test_accuracy"] for r in runs]
        rows.append({
            "network": network, "variant": variant, "seeds": len(runs),
            "validation": statistics.mean(val), "test": statistics.mean(test),
            "test_sd": statistics.stdev(test) if len(test) > 1 else 0.0,
            "sparsity": statistics.mean(r["sparsity"] for r in runs),
            "epoch_seconds": statistics.median(s for r in runs for s in r["epoch_seconds"]),
        })
    order = {name: i for i, name in enumerate(variants())}
    rows.sort(key=lambda row: (NETWORKS.index(row["network"]), order[row["variant"]]))
    return rows


def choose(rows, sparsity=0.9):
    """The default allocation by validation: best mean validation accuracy
    over the networks that ran every allocation at `sparsity`."""
    return _choose(rows, [f"{a}-s{sparsity}" for a in ALLOCATIONS],
                   label=f"at {sparsity:.0%}", what=lambda name: name.rsplit("-s", 1)[0])


def choose_schedule(rows):
    """The plan by validation: LAMP at 90% on FSA(end_fraction=0.5), the
    default so far, against each plan of `SCHEDULES`."""
    names = ["lamp-s0.9"] + [f"lamp-s0.9-{suffix}" for suffix in SCHEDULES]
    ran = {}
    for row in rows:
        ran.setdefault(row["network"], set()).add(row["variant"])
    everywhere = [n for n in names if all(n in found for found in ran.values())]
    return _choose(rows, everywhere or names, label="of LAMP at 90%, per plan (those every network ran),",
                   what=describe_plan)


def _choose(rows, names, label, what):
    """Mean validation accuracy of each variant in `names` over the networks
    that ran them all, ranked; the best is the choice."""
    by_network = {}
    for row in rows:
        if row["variant"] in names:
            by_network.setdefault(row["network"], {})[row["variant"]] = row["validation"]
    complete = [n for n, found in by_network.items() if len(found) == len(names)]
    if not complete:
        return [f"No network has run every variant {label} yet: no choice."]
    means = {name: statistics.mean(by_network[n][name] for n in complete) for name in names}
    ranked = sorted(means, key=means.get, reverse=True)
    return [
        f"Mean validation accuracy {label} over {', '.join(complete)}: "
        + ", ".join(f"{name} {means[name]:.2f}" for name in ranked)
        + f". Choice: {what(ranked[0])}."
    ]


def report(path):
    with open(path) as f:
        results = json.load(f)
    rows = summarize(results)
    lines = [
        f"Settings: {results['settings']}; backend {results['backend']}.",
        "Choices on validation accuracy (last 5,000 training images); test accuracy",
        "(10,000 test images) quoted beside it.",
        "",
        "| network | variant | seeds | validation acc (%) | test acc (%) | sparsity | s/epoch |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        spread = f" ± {row['test_sd']:.2f}" if row["seeds"] > 1 else ""
        lines.append(
            f"| {row['network']} | {row['variant']} | {row['seeds']} | {row['validation']:.2f} | "
            f"{row['test']:.2f}{spread} | {row['sparsity']:.1%} | {row['epoch_seconds']:.1f} |"
        )
    lines += ["", *choose(rows), "", *choose_schedule(rows)]
    stem = os.path.splitext(path)[0]
    with open(stem + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no figure")
        return
    networks = [n for n in NETWORKS if any(r["network"] == n for r in rows)]
    fig, axes = plt.subplots(1, len(networks), figsize=(4 * len(networks), 3.5), squeeze=False)
    for ax, network in zip(axes[0], networks):
        mine = [r for r in rows if r["network"] == network]
        for allocation in ALLOCATIONS:
            grid = {f"{allocation}-s{sparsity}" for sparsity in SPARSITIES}
            points = sorted((r["sparsity"], r["validation"]) for r in mine if r["variant"] in grid)
            if points:
                ax.plot(*zip(*points), marker="o", label=allocation)
        for r in mine:
            if r["variant"] == "lamp-s0.9-linear-late":
                ax.plot(r["sparsity"], r["validation"], marker="*", markersize=12,
                        linestyle="none", color="black", label="lamp, recommended plan")
        for variant, style in (("published", "--"), ("none", ":")):
            for r in mine:
                if r["variant"] == variant:
                    ax.axhline(r["validation"], color="gray", linestyle=style, label=variant)
        ax.set_title(network)
        ax.set_xlabel("sparsity")
        ax.set_ylabel("validation accuracy (%)")
    axes[0][0].legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(stem + ".png", dpi=120)
    print(f"Wrote {stem}.md and {stem}.png")


def main(argv=None):
    args = parse_args(argv)
    path = os.path.join(args.output_dir, f"{args.name}.json")
    if args.report:
        return report(path)
    from _common import environment
    from _common import write_results

    settings = {"epochs": args.epochs, "train": args.train, "frequency": args.frequency,
                "validation": VALIDATION,
                "data": os.path.basename(args.data) if args.data else "keras download"}
    results = {"settings": settings, **environment(), "commands": [], "variants": variants(), "runs": []}
    if args.resume and os.path.exists(path):
        with open(path) as f:
            previous = json.load(f)
        if previous["settings"] != settings or previous["backend"] != results["backend"]:
            raise SystemExit(f"--resume: {path} was run with other settings: {previous['settings']}")
        results.update(commands=previous["commands"], runs=previous["runs"])
    results["commands"].append(" ".join([os.path.basename(sys.executable)] + sys.argv))
    data = load(args.data, args.train)
    done = {(r["network"], r["variant"], r["seed"]) for r in results["runs"]}
    table = variants()
    for seed in args.seeds:
        for network in args.networks:
            for name in args.variants:
                if (network, name, seed) in done:
                    continue
                start = time.perf_counter()
                record = {"variant": name, **run(network, table[name], seed, data, args)}
                results["runs"].append(record)
                write_results(args.name, results, directory=args.output_dir)
                print(f"{network:>9} {name:>14} seed {seed}: validation "
                      f"{record['validation_accuracy']:.4f}, test {record['test_accuracy']:.4f}, "
                      f"sparsity {record['sparsity']:.3f}, {time.perf_counter() - start:.0f} s",
                      flush=True)
    report(path)


if __name__ == "__main__":
    main()
