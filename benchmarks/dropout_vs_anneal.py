"""mnist_cnn: Dropout against annealed pruning (and tfmot), side by side.

Runs every variant for every seed in one invocation, on one machine, and
writes benchmarks/results/<name>.json after each run, so a long run that is
stopped keeps what it finished. Per variant and seed it records, per epoch,
train and test accuracy and loss, wall time and sparsity, and the final
sparsity per pruned layer.

    python benchmarks/dropout_vs_anneal.py --data ../shared/datasets/mnist.npz
    python benchmarks/dropout_vs_anneal.py --variants dropout fsa-mu10-s0.9 --seeds 0 1 2
    python benchmarks/dropout_vs_anneal.py --subset 512 --epochs 1 --name smoke
    python benchmarks/report.py benchmarks/results/dropout_vs_anneal.json

tfmot (`prune_low_magnitude` with `PolynomialDecay`) needs legacy Keras 2, so
its variants run in a subprocess (benchmarks/_tfmot_worker.py) with
TF_USE_LEGACY_KERAS=1; install it with `pip install -e ".[benchmarks]"`.
"""

import argparse
import fnmatch
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
FSA_MUS = (1, 10, 100)
SPARSITIES = (0.9, 0.95, 0.98)


def variants():
    """Variant name -> arguments of `mnist_cnn.prepare` (or a tfmot run).

    A variant may set its own `frequency` (optimizer steps between mask
    updates); otherwise `--frequency` applies.
    """
    table = {
        "dropout": {"regularizer": "dropout"},
        "none": {"regularizer": "none"},
        "constant-rate": {"regularizer": "anneal", "schedule": "constant-rate"},
    }
    for sparsity in SPARSITIES:
        for mu in FSA_MUS:
            table[f"fsa-mu{mu}-s{sparsity}"] = {
                "regularizer": "anneal", "schedule": "fsa", "final_sparsity": sparsity, "mu": mu,
            }
        # tfmot's plan through keras-anneal: tells the schedule from the implementation.
        table[f"polynomial-s{sparsity}"] = {
            "regularizer": "anneal", "schedule": "polynomial", "final_sparsity": sparsity,
        }
        table[f"tfmot-s{sparsity}"] = {"regularizer": "tfmot", "final_sparsity": sparsity}
    # Annealing as a regularizer (issue 8): FSA (mu = 10) to 90% with other
    # criteria, with pruning that is not permanent, and with Dropout kept.
    fsa = {"regularizer": "anneal", "schedule": "fsa", "final_sparsity": 0.9, "mu": 10}
    table["fsa-random-s0.9"] = {**fsa, "criterion": "random"}
    table["fsa-largest-s0.9"] = {**fsa, "criterion": "largest"}
    for fraction in (0.1, 0.3, 0.5):
        table[f"fsa-noise{fraction}-s0.9"] = {
            **fsa, "frequency": 10,
            "temporary": {"fraction": fraction, "duration": 10, "criterion": "random"},
        }
        table[f"fsa-noiselargest{fraction}-s0.9"] = {
            **fsa, "frequency": 10,
            "temporary": {"fraction": fraction, "duration": 10, "criterion": "largest"},
        }
    # The plan `AnnealedPruning(0.9)` runs (a linear ramp from 20% to 80% of
    # training, chosen for issue 14), alone and with the largest 10% removed
    # for a while.
    recommended = {**fsa, "schedule": "recommended"}
    del recommended["mu"]
    table["recommended-s0.9"] = recommended
    table["recommended-noiselargest0.1-s0.9"] = {
        **recommended, "frequency": 10,
        "temporary": {"fraction": 0.1, "duration": 10, "criterion": "largest"},
    }
    table["recommended-noise0.5-s0.9"] = {  # Half of the kept out at every step.
        **recommended, "frequency": 1, "temporary": {"fraction": 0.5, "duration": 1},
    }
    # DropConnect on the two pruned Dense layers' kept weights (one draw per
    # batch, inverted scaling): pruning's noise at every step, in the graph.
    for rate in (0.3, 0.5, 0.6, 0.7):
        table[f"recommended-dropconnect{rate}-s0.9"] = {**recommended, "drop_connect": rate}
    # The chosen rate with four draws per batch (example i gets draw i mod 4):
    # closer to Wan et al.'s draw per example, a less noisy gradient.
    table["recommended-dropconnect0.5-groups4-s0.9"] = {
        **recommended, "drop_connect": 0.5, "drop_connect_groups": 4}
    # The chosen rate as normal noise of the same variance, drawn per example
    # and per weight (Kingma et al. 2015's local reparameterization): the
    # independence of Wan et al.'s DropConnect at the cost of one matmul.
    table["recommended-gaussian0.5-s0.9"] = {
        **recommended, "drop_connect": 0.5, "drop_connect_noise": "gaussian"}
    # DropConnect also on the second convolution (left dense), where the
    # first Dropout (0.25) acted: both of the published network's noises.
    table["recommended-dropconnect0.5-conv0.25-s0.9"] = {
        **recommended, "drop_connect": 0.5, "conv_drop_connect": 0.25}
    # The same noise on FSA's plan (mu = 10), the best pruning-only plan on validation.
    table["fsa-dropconnect0.5-s0.9"] = {**fsa, "drop_connect": 0.5}
    # The chosen variant with each layer pruned alike (the allocation of the
    # runs made before LAMP became the default).
    table["recommended-dropconnect0.5-uniform-s0.9"] = {
        **recommended, "drop_connect": 0.5, "allocation": "uniform"}
    table["fsa-set-s0.9"] = {**fsa, "regrowth": {"fraction": 0.3}}
    table["fsa-rigl-s0.9"] = {**fsa, "regrowth": {"fraction": 0.3, "grow": "gradient"}}
    # Dropout kept, its rate scaled to the connections left (Han et al. 2015):
    # reported on its own row, it does not count as "annealing without Dropout".
    table["hybrid-dropout-fsa-s0.9"] = {**fsa, "regularizer": "hybrid"}
    return table


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["*"],
                        help=f"names or shell patterns among: {', '.join(variants())}")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--frequency", type=int, default=50, help="optimizer steps between mask updates")
    parser.add_argument("--subset", type=int, help="first N training images (N // 6 test images)")
    parser.add_argument("--split", choices=["validation", "test"], default="validation",
                        help="validation: train on the first 55,000 training images and score on "
                             "the last 5,000 (where every choice is made); test: train on all "
                             "60,000 and score on the test set (final figures of chosen variants)")
    parser.add_argument("--data", help="local mnist.npz; downloads MNIST if omitted")
    parser.add_argument("--backend", choices=["tensorflow", "jax", "torch"],
                        help="Keras backend; KERAS_BACKEND or tensorflow if omitted")
    parser.add_argument("--name", help="results file name; dropout_vs_anneal[_validation] if omitted")
    parser.add_argument("--output-dir", default=os.path.join(HERE, "results"))
    parser.add_argument("--resume", action="store_true",
                        help="keep the runs already in the results file and skip them")
    parser.add_argument("--redo", action="store_true",
                        help="with --resume: run the given variants and seeds again and replace "
                             "their records (e.g. to add a measurement older runs lack)")
    args = parser.parse_args(argv)
    if args.name is None:
        args.name = "dropout_vs_anneal" + ("_validation" if args.split == "validation" else "")
    known = variants()
    selected = []  # In the order of the patterns given: that is the order of the runs.
    for pattern in args.variants:
        selected += [n for n in known if fnmatch.fnmatch(n, pattern) and n not in selected]
    args.variants = selected
    if not args.variants:
        parser.error(f"--variants matched none of: {', '.join(known)}")
    if args.redo and not args.resume:
        parser.error("--redo replaces records of an existing results file: it needs --resume")
    return args


def run_keras_variant(config, seed, epochs, data, subset, frequency=50, split="test"):
    """Trains one Keras 3 variant; returns (record, model).

    Records, besides the per-epoch history, the final accuracy on the
    training images in inference mode (masks on, Dropout off): the
    train-test gap.
    """
    import keras
    from _common import EpochTimer

    import keras_anneal

    sys.path.insert(0, os.path.join(HERE, os.pardir, "examples"))
    import mnist_cnn  # The example is the one definition of the model.

    keras.utils.set_random_seed(seed)
    (x_train, y_train), (x_test, y_test) = mnist_cnn.load_data(data, subset)
    if split == "validation":  # The last 5,000 training images (1/12) score the run.
        held_out = len(x_train) // 12
        (x_train, y_train), (x_test, y_test) = (
            (x_train[:-held_out], y_train[:-held_out]), (x_train[-held_out:], y_train[-held_out:])
        )
    if config["regularizer"] in ("anneal", "hybrid"):
        config = {"frequency": frequency, **config}
    if config.get("regrowth", {}).get("grow") == "gradient":  # RigL: gradients on training data.
        config = {**config, "regrowth_data": (x_train, y_train)}
    model, callbacks = mnist_cnn.prepare(**config)
    timer = EpochTimer()
    history = model.fit(x_train, y_train, batch_size=mnist_cnn.BATCH_SIZE, epochs=epochs,
                        validation_data=(x_test, y_test), callbacks=callbacks + [timer], verbose=0)
    report = keras_anneal.sparsity_report(model)
    if config.get("conv_drop_connect"):  # The convolution is wrapped but stays dense.
        report = dense_only(report, model)
    record = epoch_record(history.history, timer.times, report.to_dict())
    # The callback's default allocation changed (uniform, then LAMP): say which ran.
    pruning = [c for c in callbacks if isinstance(c, keras_anneal.AnnealedPruning)]
    record["allocation"] = type(pruning[0].allocation).__name__ if pruning else None
    _, record["final_train_accuracy"] = model.evaluate(
        x_train, y_train, batch_size=1024, verbose=0
    )
    return record, model


def dense_only(report, model):
    """A `SparsityReport` restricted to the wrapped Dense layers."""
    import keras

    import keras_anneal

    dense = {layer.name for layer in keras_anneal.masked_layers(model)
             if isinstance(layer.layer, keras.layers.Dense)}
    return keras_anneal.SparsityReport(tuple(row for row in report.layers if row.name in dense))


def epoch_record(history, times, sparsity):
    """The per-run record both the Keras 3 and the tfmot runs write."""
    epochs = [
        {
            "epoch": i + 1,
            "train_accuracy": float(history["accuracy"][i]),
            "train_loss": float(history["loss"][i]),
            "test_accuracy": float(history["val_accuracy"][i]),
            "test_loss": float(history["val_loss"][i]),
            "seconds": float(times[i]),
            "sparsity": float(history.get("sparsity", [0.0] * len(times))[i]),
        }
        for i in range(len(times))
    ]
    return {
        "epochs": epochs,
        "final_test_accuracy": epochs[-1]["test_accuracy"],
        "final_sparsity": sparsity,
    }


def run_tfmot_variant(config, seed, args):
    if args.split == "validation":
        raise SystemExit("tfmot variants run on --split test only (their worker has no validation split)")
    command = [sys.executable, os.path.join(HERE, "_tfmot_worker.py"),
               "--final-sparsity", str(config["final_sparsity"]), "--seed", str(seed),
               "--epochs", str(args.epochs), "--frequency", str(args.frequency)]
    if args.data:
        command += ["--data", args.data]
    if args.subset:
        command += ["--subset", str(args.subset)]
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"tfmot worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.split("RESULT ", 1)[1])


def main(argv=None):
    args = parse_args(argv)
    if args.backend:
        os.environ["KERAS_BACKEND"] = args.backend
    from _common import environment  # Imports keras: after KERAS_BACKEND is set.
    from _common import write_results

    table = variants()
    settings = {"epochs": args.epochs, "subset": args.subset, "frequency": args.frequency,
                "data": os.path.basename(args.data) if args.data else "keras download"}
    if args.split == "validation":  # The test-split file predates the split setting.
        settings["split"] = "validation"
    results = {"settings": settings, **environment(), "commands": [], "variants": {}, "runs": []}
    path = os.path.join(args.output_dir, f"{args.name}.json")
    if args.resume and os.path.exists(path):
        with open(path) as f:
            previous = json.load(f)
        if previous["settings"] != settings or previous["backend"] != results["backend"]:
            raise SystemExit(f"--resume: {path} was run with other settings: {previous['settings']}")
        results.update(commands=previous["commands"], variants=previous["variants"], runs=previous["runs"])
    results["commands"].append(" ".join([os.path.basename(sys.executable)] + sys.argv))
    # With --redo an old record stays until its new run has finished.
    done = set() if args.redo else {(run["variant"], run["seed"]) for run in results["runs"]}
    for seed in args.seeds:
        for name in args.variants:
            if (name, seed) in done:
                continue
            config = results["variants"][name] = table[name]
            start = time.perf_counter()
            if config["regularizer"] == "tfmot":
                record = run_tfmot_variant(config, seed, args)
            else:
                record, _ = run_keras_variant(
                    config, seed, args.epochs, args.data, args.subset, args.frequency, args.split
                )
            record = {"variant": name, "seed": seed, **record}
            results["runs"] = [r for r in results["runs"] if (r["variant"], r["seed"]) != (name, seed)]
            results["runs"].append(record)
            path = write_results(args.name, results, directory=args.output_dir)
            print(f"{name:>16} seed {seed}: test accuracy {record['final_test_accuracy']:.4f}, "
                  f"sparsity {record['final_sparsity']['sparsity']:.3f}, "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
    print(f"Wrote {path}")
    return results


if __name__ == "__main__":
    main()
