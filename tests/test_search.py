import math
import warnings

import keras
import numpy as np
import pytest
from conftest import small_mlp

import keras_anneal
from keras_anneal import search
from keras_anneal.search import costs
from keras_anneal.search import operators
from keras_anneal.search.base import Scorer
from keras_anneal.search.base import calibration_batches

CAP = 0.05
_TRAINED = {}


def task_data(n=256, seed=0):
    """y depends on 3 of the 8 inputs: most connections are redundant."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype("float32")
    y = (x[:, :3] @ np.array([[1.0], [-2.0], [0.5]])).astype("float32")
    return x, y


def trained_model():
    """A small pruned-ready MLP trained on `task_data` (trained once per backend)."""
    model = keras_anneal.prune_model(small_mlp(outputs=1))
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse", metrics=["mae"])
    if "weights" not in _TRAINED:
        model.fit(*task_data(), epochs=30, batch_size=32, verbose=0)
        _TRAINED["weights"] = model.get_weights()
    model.set_weights(_TRAINED["weights"])
    return model


def calibration():
    return task_data(n=128, seed=1)


def snapshot(model):
    return [np.array(w) for w in model.get_weights()]


def assert_unchanged(model, before):
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)


SEARCHES = {
    "annealing": lambda **kw: search.SimulatedAnnealing(iterations=40, **kw),
    "annealing-random": lambda **kw: search.SimulatedAnnealing(iterations=40, proposal="random", **kw),
    "genetic": lambda **kw: search.GeneticAlgorithm(generations=4, population_size=6, tournament_size=3, **kw),
    "genetic-random": lambda **kw: search.GeneticAlgorithm(generations=4, population_size=6, tournament_size=3,
                                                           proposal="random", **kw),
}


@pytest.mark.parametrize("name", sorted(SEARCHES))
def test_search_prunes_within_the_loss_cap(name):
    model = trained_model()
    result = SEARCHES[name](loss_cap=CAP, seed=0, verbose=0).run(model, *calibration())
    assert result.sparsity > 0.02
    assert result.final.loss < result.baseline.loss + CAP
    # Each mask was searched under its own, tighter cap: every accepted row respects it.
    assert all(row["loss"] < row["max_loss"] for row in result.history if row.get("accepted", True)
               and row["cost"] < costs.LOSS_CAP_PENALTY)
    report = keras_anneal.sparsity_report(model)
    assert report.sparsity == pytest.approx(result.sparsity)
    for layer in keras_anneal.masked_layers(model):
        for on_model, in_result in zip(layer.get_masks(), result.masks[layer.name]):
            np.testing.assert_array_equal(on_model, in_result)
    x, y = calibration()
    assert model.evaluate(x, y, verbose=0, return_dict=True)["loss"] == pytest.approx(result.loss, rel=1e-4)


@pytest.mark.parametrize("name", sorted(SEARCHES))
def test_seeded_search_is_reproducible(name):
    runs = []
    for _ in range(2):
        model = trained_model()
        runs.append(SEARCHES[name](seed=3, verbose=0).run(model, *calibration()))
    first, second = runs
    assert [row["cost"] for row in first.history] == [row["cost"] for row in second.history]
    for layer_name, masks in first.masks.items():
        for a, b in zip(masks, second.masks[layer_name]):
            np.testing.assert_array_equal(a, b)


def test_searches_never_revive_pruned_weights():
    model = trained_model()
    hidden = keras_anneal.masked_layers(model)[0]
    start = np.ones((8, 16))
    start[3:] = 0  # The inputs the target does not use.
    hidden.set_masks([start])
    result = search.genetic_algorithm(model, *calibration(), generations=3, population_size=6,
                                      tournament_size=3, seed=0, verbose=0)
    assert not result.masks[hidden.name][0][3:].any()


def test_warmup_cap_follows_seed_002():
    model = trained_model()
    result = search.simulated_annealing(model, *calibration(), iterations=5, seed=0, verbose=0,
                                        loss_cap=costs.WarmupLossCap(2.0))
    assert sorted({row["max_loss"] for row in result.history}) == [1.0, 2.0]


@pytest.mark.parametrize("budget, expected", [(50, 50), (0.25, 36), (np.float32(0.25), 36)])
@pytest.mark.parametrize("init", ["magnitude", "random"])
def test_fixed_budget_removes_exactly_k(budget, expected, init):
    model = trained_model()
    result = search.fixed_budget_annealing(model, *calibration(), budget=budget, iterations=30,
                                           init=init, seed=0, verbose=0)
    # 0.25 of the 144 weights of the two layers, rounded down.
    assert keras_anneal.sparsity_report(model).pruned == expected
    assert result.final.loss <= result.history[0]["loss"] or result.history[0]["accepted"]
    assert min(row["cost"] for row in result.history) == pytest.approx(result.loss, rel=1e-4)


def test_fixed_budget_counts_only_kept_weights():
    model = trained_model()
    hidden = keras_anneal.masked_layers(model)[0]
    start = np.ones((8, 16))
    start[0, :10] = 0
    hidden.set_masks([start])
    search.fixed_budget_annealing(model, *calibration(), budget=20, layers=hidden.name,
                                  iterations=10, seed=0, verbose=0)
    mask = hidden.get_masks()[0]
    assert (mask == 0).sum() == 30
    assert not mask[0, :10].any()


@pytest.mark.parametrize("callback_class, kwargs", [
    (keras_anneal.SimulatedAnnealingPruning, dict(iterations=20)),
    (keras_anneal.GeneticPruning, dict(generations=2, population_size=4, tournament_size=2)),
])
def test_callbacks_search_when_fit_ends(callback_class, kwargs):
    model = trained_model()
    x, y = task_data()
    callback = callback_class(*calibration(), seed=0, verbose=0, **kwargs)
    model.fit(x, y, epochs=1, batch_size=64, verbose=0, callbacks=[callback])
    assert callback.result is not None
    assert callback.result.sparsity > 0
    assert keras_anneal.sparsity_report(model).sparsity == pytest.approx(callback.result.sparsity)
    assert model.evaluate(*calibration(), verbose=0) == pytest.approx(
        [callback.result.loss, callback.result.metrics["mae"]], rel=1e-4)


@pytest.mark.parametrize("callback", [
    lambda x, y: keras_anneal.SimulatedAnnealingPruning(x, y, layers=["dense"], verbose=0),
    lambda x, y: keras_anneal.GeneticPruning(x[:0], y[:0], population_size=4, tournament_size=2),
])
def test_search_callbacks_refuse_bad_input_before_training(callback):
    model = trained_model()
    before = snapshot(model)
    epochs = []
    counter = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: epochs.append(epoch))
    with pytest.raises(ValueError, match=r"`layers` must name|at least one calibration sample"):
        model.fit(*task_data(), epochs=1, verbose=0, callbacks=[counter, callback(*calibration())])
    assert epochs == []  # Refused at on_train_begin: not one epoch was trained.
    assert_unchanged(model, before)


@pytest.mark.parametrize("make, message", [
    (lambda: search.SimulatedAnnealing(mutation_rate=1.5), "mutation_rate"),
    (lambda: search.SimulatedAnnealing(mutation_rate=-0.1), "mutation_rate"),
    (lambda: search.SimulatedAnnealing(iterations=0), "iterations"),
    (lambda: search.SimulatedAnnealing(initial_temperature=0.0), "initial_temperature"),
    (lambda: search.SimulatedAnnealing(proposal="nearest"), "proposal"),
    (lambda: search.GeneticAlgorithm(crossover_rate=2.0), "crossover_rate"),
    (lambda: search.GeneticAlgorithm(population_size=4, tournament_size=5), "tournament_size"),
    (lambda: search.GeneticAlgorithm(population_size=4, tournament_size=2, elite_size=4), "elite_size"),
    (lambda: search.GeneticAlgorithm(population_size=1, tournament_size=1, elite_size=0), "population_size"),
    (lambda: search.FixedBudgetAnnealing(budget=1.5), "budget"),
    (lambda: search.FixedBudgetAnnealing(budget=0), "budget"),
    (lambda: search.FixedBudgetAnnealing(budget=10, move_fraction=1.2), "move_fraction"),
    (lambda: search.SimulatedAnnealing(loss_cap="big"), "loss_cap"),
    (lambda: search.SimulatedAnnealing(cost="loss"), "cost"),
    (lambda: search.SimulatedAnnealing(fine_tune=3), "fine_tune"),
    (lambda: search.GeneticAlgorithm(patience=0), "patience"),
    (lambda: keras_anneal.GeneticPruning(np.zeros((4, 8)), population_size=3), "tournament_size"),
    (lambda: search.SimulatedAnnealing(seed=-1), "seed"),
    (lambda: search.GeneticAlgorithm(seed=1.5), "seed"),
    (lambda: search.GeneticAlgorithm(population=6),
     r"GeneticAlgorithm takes no argument 'population' \(did you mean 'population_size'\?\)"),
    (lambda: search.FixedBudgetAnnealing(budget=5, iteration=3), r"did you mean 'iterations'"),
])
def test_bad_parameters_are_named(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()


@pytest.mark.parametrize("run, message", [
    (lambda m, x, y: search.fixed_budget_annealing(m, x, y, budget=1000), "budget"),
    (lambda m, x, y: search.fixed_budget_annealing(m, x, y, budget=100, layers=["masked_out"]), "budget"),
    (lambda m, x, y: search.simulated_annealing(m, x[:0], y[:0]), "at least one calibration sample"),
    (lambda m, x, y: search.genetic_algorithm(m, x, y, layers=["dense"]), "layers"),
    (lambda m, x, y: search.simulated_annealing(m, x, y, batch_size=0), "batch_size"),
])
def test_bad_input_leaves_the_model_untouched(run, message):
    model = trained_model()
    before = snapshot(model)
    with pytest.raises(ValueError, match=message):
        run(model, *calibration())
    assert_unchanged(model, before)


def test_a_failing_search_restores_the_masks():
    model = trained_model()
    before = snapshot(model)
    calls = []

    def failing_cost(evaluation):
        calls.append(evaluation)
        if len(calls) > 5:
            raise RuntimeError("interrupted")
        return costs.loss_sparsity_cost(evaluation)

    with pytest.raises(RuntimeError, match="interrupted"):
        search.simulated_annealing(model, *calibration(), cost=failing_cost, verbose=0)
    assert_unchanged(model, before)


def test_model_requirements():
    x, y = calibration()
    plain = small_mlp(outputs=1)
    plain.compile(loss="mse")
    with pytest.raises(ValueError, match="prune_model"):
        search.simulated_annealing(plain, x, y)
    uncompiled = keras_anneal.prune_model(small_mlp(outputs=1))
    with pytest.raises(ValueError, match="compiled"):
        search.simulated_annealing(uncompiled, x, y)


def test_user_cost_is_minimised():
    model = trained_model()
    # A cost that rewards keeping weights: nothing is pruned.
    result = search.simulated_annealing(model, *calibration(), iterations=10, seed=0, verbose=0,
                                        cost=lambda evaluation: evaluation.sparsity)
    assert result.sparsity == 0.0
    assert result.evaluations == 1 + 2 * 11 + 1  # Baseline, 2 masks x (start + 10), final.


def test_fine_tuning_trains_the_kept_weights_only():
    model = trained_model()
    x, y = task_data()
    result = search.simulated_annealing(model, *calibration(), iterations=30, seed=0, verbose=0,
                                        fine_tune=dict(x=x, y=y, epochs=2, batch_size=64))
    report = keras_anneal.sparsity_report(model)
    assert report.sparsity == pytest.approx(result.sparsity) and result.sparsity > 0
    assert model.evaluate(*calibration(), verbose=0)[0] == pytest.approx(result.loss, rel=1e-4)


def test_history_rows_share_their_columns():
    model = trained_model()
    result = search.simulated_annealing(model, *calibration(), iterations=7, seed=0, verbose=0)
    assert len(result.history) == 14
    assert {tuple(sorted(row)) for row in result.history} == {tuple(sorted(result.history[0]))}
    assert {"mask", "step", "temperature", "mutation_rate", "accepted", "cost", "loss",
            "sparsity", "mean_layer_sparsity", "mae"} <= set(result.history[0])
    assert result.evaluations_per_second > 0


def test_focused_scores_equal_whole_model_scores():
    model = keras_anneal.prune_model(keras.Sequential([
        keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(8),
        keras.layers.Dense(1),
    ]))
    model.compile(loss="mse", metrics=["mae"])
    x, y = calibration()
    scorer = Scorer(model, calibration_batches(x, y, batch_size=50))
    whole = scorer()
    last = keras_anneal.masked_layers(model)[2]
    scorer.focus([last])
    assert scorer._target is not model  # The first two layers are not re-run.
    last.set_masks([np.zeros((8, 1))])
    focused = scorer()
    scorer.focus()
    assert focused == pytest.approx(scorer(), rel=1e-5)
    assert focused != pytest.approx(whole)


def test_focus_falls_back_when_skipped_layers_add_a_loss():
    model = keras_anneal.prune_model(keras.Sequential([
        keras.Input((8,)), keras.layers.Dense(16, kernel_regularizer="l2"), keras.layers.Dense(1),
    ]))
    model.compile(loss="mse")
    scorer = Scorer(model, calibration_batches(*calibration()))
    scorer.focus([keras_anneal.masked_layers(model)[1]])
    assert scorer._target is model


def test_batched_calibration_scores_like_one_batch():
    model = trained_model()
    x, y = calibration()
    one = Scorer(model, calibration_batches(x, y))()
    batched = Scorer(model, calibration_batches(x, y, batch_size=48))()
    assert batched == pytest.approx(one, rel=1e-5)


# Pure operators and costs.

def test_prune_small_draws_among_the_smallest():
    rng = np.random.default_rng(0)
    magnitudes = np.arange(100, dtype=float)
    mask = np.ones(100, dtype=bool)
    for _ in range(20):
        candidate = operators.prune_small(mask, magnitudes, 0.05, rng)
        pruned = np.flatnonzero(mask & ~candidate)
        assert 1 <= pruned.size and pruned.max() < 2 * pruned.size


def test_mutate_and_crossover_stay_within_allowed():
    rng = np.random.default_rng(0)
    allowed = rng.random((20, 20)) < 0.5
    a, b = operators.random_mask(allowed, 0.3, rng), operators.random_mask(allowed, 0.3, rng)
    c, d = operators.single_point_crossover(a, b, rng)
    np.testing.assert_array_equal(c.astype(int) + d, a.astype(int) + b)
    mutated = operators.mutate(c, 0.5, allowed, rng)
    assert not (mutated & ~allowed).any()


def test_move_positions_keeps_k():
    rng = np.random.default_rng(0)
    allowed = np.ones(50, dtype=bool)
    allowed[:5] = False
    removed = np.zeros(50, dtype=bool)
    removed[10:20] = True
    for _ in range(10):
        removed = operators.move_positions(removed, allowed, 3, rng)
        assert removed.sum() == 10 and not removed[:5].any()


def test_metropolis_acceptance_rate():
    rng = np.random.default_rng(0)
    accepted = np.mean([operators.metropolis_accepts(1.0, 2.0, rng) for _ in range(4000)])
    assert accepted == pytest.approx(math.exp(-0.5), abs=0.03)


def test_tournament_picks_the_lowest_cost_entrant():
    rng = np.random.default_rng(0)
    winners = {operators.tournament([5.0, 4.0, 3.0, 2.0, 1.0], 5, rng) for _ in range(10)}
    assert winners == {4}


def test_loss_sparsity_cost_penalises_the_cap():
    within = costs.Evaluation(loss=0.2, metrics={}, sparsity=0.5, mean_layer_sparsity=0.25,
                              baseline_loss=0.1, max_loss=0.3)
    beyond = costs.Evaluation(loss=0.3, metrics={}, sparsity=0.9, mean_layer_sparsity=0.9,
                              baseline_loss=0.1, max_loss=0.3)
    assert costs.loss_sparsity_cost(within) == pytest.approx(0.01 + 4.0)
    assert costs.loss_sparsity_cost(beyond) > costs.LOSS_CAP_PENALTY > costs.loss_sparsity_cost(within)


def test_patience_stops_a_stalled_mask_search():
    model = trained_model()
    # A constant cost: no candidate is ever better than the start, whatever the
    # trained weights (which differ between machines), so each mask stops after
    # exactly `patience` steps.
    def flat(evaluation):
        return 1.0

    result = search.simulated_annealing(model, *calibration(), iterations=50, patience=3, verbose=0,
                                        cost=flat)
    assert [row["step"] for row in result.history] == [0, 1, 2, 0, 1, 2]
    model = trained_model()
    result = search.genetic_algorithm(model, *calibration(), generations=50, patience=2, verbose=0,
                                      population_size=4, tournament_size=2, cost=flat)
    assert [row["generation"] for row in result.history] == [0, 1, 0, 1]


def test_calibration_batches_from_an_iterable():
    model = trained_model()
    x, y = calibration()
    from_arrays = Scorer(model, calibration_batches(x, y, batch_size=32))()
    generator = ((x[i:i + 32], y[i:i + 32]) for i in range(0, len(x), 32))
    assert Scorer(model, calibration_batches(generator))() == pytest.approx(from_arrays, rel=1e-6)
    with pytest.raises(ValueError, match="`y`"):
        calibration_batches(iter([(x, y)]), y)


def test_a_metric_that_is_not_a_mean_warns_when_scored_batch_by_batch():
    model = trained_model()
    x, y = calibration()
    model.compile(loss="mse", metrics=["mae", keras.metrics.AUC(name="auc")])
    with pytest.warns(UserWarning, match=r"\['auc'\] as the size-weighted mean.*4 calibration"):
        search.simulated_annealing(model, x, y > 0, iterations=2, batch_size=32, seed=0, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # One batch, or only means: exact, no warning.
        search.simulated_annealing(model, x, y > 0, iterations=2, seed=0, verbose=0)
        model.compile(loss="mse", metrics=["mae"])
        search.simulated_annealing(model, x, y, iterations=2, batch_size=32, seed=0, verbose=0)


@pytest.mark.parametrize("run", [
    lambda m, x, y: search.simulated_annealing(m, x, y, iterations=20, seed=0, verbose=0),
    lambda m, x, y: search.fixed_budget_annealing(m, x, y, budget=10, iterations=20, seed=0, verbose=0),
])
def test_candidates_with_a_nan_loss_are_rejected_and_counted(run, monkeypatch):
    model = trained_model()
    hidden = keras_anneal.masked_layers(model)[0]
    scores = search.base.Scorer._score

    def nan_without_the_first_input(target, batches):
        """The loss is NaN for any masks that prune a weight of the first input."""
        logs = scores(target, batches)
        return {**logs, "loss": math.nan} if not hidden.get_masks()[0][0].all() else logs

    monkeypatch.setattr(search.base.Scorer, "_score", staticmethod(nan_without_the_first_input))
    with pytest.warns(RuntimeWarning, match=r"candidate masks gave a NaN or infinite loss"):
        result = run(model, *calibration())
    assert hidden.get_masks()[0][0].all()  # No candidate with a NaN loss was kept.
    assert math.isfinite(result.loss) and keras_anneal.sparsity_report(model).pruned > 0


def narrow_model():
    """A trained 8 -> 16 -> 2 model whose second output weighs little in the loss."""
    keras.utils.set_random_seed(0)
    model = keras_anneal.prune_model(keras.Sequential([
        keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(2)]))
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    x, y = task_data()
    model.fit(x, np.concatenate([y, 0.01 * y], axis=1), epochs=20, batch_size=32, verbose=0)
    xc, yc = calibration()
    return model, xc, np.concatenate([yc, 0.01 * yc], axis=1)


def connected_units(model):
    """Per masked layer, the output units that keep an incoming weight."""
    return {layer.name: layer.get_masks()[0].reshape(-1, layer.get_masks()[0].shape[-1]).any(axis=0)
            for layer in keras_anneal.masked_layers(model)}


GUARDED_SEARCHES = {
    "annealing": lambda **kw: search.SimulatedAnnealing(iterations=60, mutation_rate=0.6, patience=None,
                                                        loss_cap=10.0, **kw),
    "genetic": lambda **kw: search.GeneticAlgorithm(generations=6, population_size=6, tournament_size=3,
                                                    mutation_rate=0.6, patience=None, loss_cap=10.0, **kw),
    "fixed-budget": lambda **kw: search.FixedBudgetAnnealing(0.85, iterations=60, init="random", **kw),
}


@pytest.mark.parametrize("name", sorted(GUARDED_SEARCHES))
def test_searches_keep_every_unit_connected_unless_told(name):
    # Under a loose cap and a high pruning rate, an unguarded search cuts
    # units off; the guarded one prunes as hard but leaves each unit a weight.
    cut = {}
    for guard in (True, False):
        model, x, y = narrow_model()
        result = GUARDED_SEARCHES[name](keep_units_connected=guard, seed=0, verbose=0).run(model, x, y)
        cut[guard] = sum(int((~alive).sum()) for alive in connected_units(model).values())
        assert result.sparsity > 0.5
    assert cut[True] == 0
    assert cut[False] > 0


def test_guarded_fixed_budget_stays_exact_and_refuses_the_anchors():
    model = trained_model()  # 8 -> 16 -> 1: 144 weights, 17 output units.
    search.fixed_budget_annealing(model, *calibration(), budget=127, iterations=10, seed=0, verbose=0)
    assert keras_anneal.sparsity_report(model).pruned == 127
    assert all(alive.all() for alive in connected_units(model).values())
    model = trained_model()
    before = snapshot(model)
    masks_before = [layer.get_masks() for layer in keras_anneal.masked_layers(model)]
    with pytest.raises(ValueError, match=r"budget.*127 weights.*keep_units_connected=True.*budget=128"):
        search.fixed_budget_annealing(model, *calibration(), budget=128, iterations=10, seed=0, verbose=0)
    assert_unchanged(model, before)
    for layer, masks in zip(keras_anneal.masked_layers(model), masks_before):
        for a, b in zip(layer.get_masks(), masks):
            np.testing.assert_array_equal(a, b)


def test_unit_anchors_take_each_connected_units_largest_kept_weight():
    scores = np.array([[0.5, 4.0, 1.0], [2.0, 3.0, 1.0], [2.0, 9.0, 0.0]])
    kept = np.array([[True, True, False], [True, True, False], [True, False, False]])
    anchors = keras_anneal.masking.unit_anchors(scores, kept)
    # Column 0: a tie at 2.0 goes to the lower row; column 1: 9.0 is pruned; column 2: no weight left.
    assert anchors.tolist() == [[False, True, False], [True, False, False], [False, False, False]]
    assert not keras_anneal.masking.unit_anchors(scores, kept, unit_axes=0).any()
    conv = np.arange(24.0).reshape(2, 2, 3, 2)
    assert keras_anneal.masking.unit_anchors(conv, np.ones_like(conv, dtype=bool)).sum() == 2
    # A transposed convolution's kernel (k, k, filters, n_in): one anchor per filter, the largest.
    transposed = keras_anneal.masking.unit_anchors(
        conv, np.ones_like(conv, dtype=bool), keras_anneal.masking.UNITS_BEFORE_LAST)
    assert transposed.sum(axis=(0, 1, 3)).tolist() == [1, 1, 1]
    assert transposed[1, 1, :, 1].all()  # The largest values, 19, 21 and 23, are there.


def test_a_cost_that_returns_nan_is_rejected_counted_and_named():
    model = trained_model()
    before = keras_anneal.sparsity_report(model).pruned
    with pytest.warns(RuntimeWarning, match=r"`cost` returned NaN for \d+ candidate masks"):
        search.simulated_annealing(model, *calibration(), cost=lambda evaluation: math.nan,
                                   iterations=5, seed=0, verbose=0)
    assert keras_anneal.sparsity_report(model).pruned == before  # No NaN-cost mask kept.
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # The default cost: nothing to say.
        search.simulated_annealing(model, *calibration(), iterations=5, seed=0, verbose=0)
