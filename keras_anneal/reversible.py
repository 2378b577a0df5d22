"""Pruning that need not be permanent: temporary removal and drop-and-regrow.

Pure mask maths on NumPy arrays, used by `AnnealedPruning`: the callback
keeps the *permanent* masks (what the schedule and criterion pruned) and
asks these rules for the masks it actually writes.

- `TemporaryRemoval`: noise injection. At each update, a fraction of the kept
  weights is removed for a number of steps and then returns (Bartoldson et
  al., NeurIPS 2020: pruning acts like noise injection, and the benefit
  remains when pruned weights may come back).
- `Regrowth`: drop-and-regrow at fixed sparsity once the plan has reached it
  (SET, Mocanu et al. 2018: random regrowth; RigL, Evci et al. 2020:
  regrowth by gradient magnitude). The count pruned is unchanged at every
  update.
"""

import math

import numpy as np

from keras_anneal import _validation
from keras_anneal import criteria as criteria_module
from keras_anneal import masking


def _check_end_fraction(value):
    return _validation.check_fraction("end_fraction", value)


class TemporaryRemoval:
    """Removes a fraction of the kept weights for `duration` steps, then returns them.

    At each mask update at step `t < end_fraction * total_steps`, in each
    weight tensor, `floor(fraction * kept)` of the kept weights (those of
    lowest `criterion` score: random ones by default, the largest with
    `criterion="largest"`) are removed until step `t + duration`. Removed
    weights keep their values and receive no gradient meanwhile. The
    permanent masks are untouched: the sparsity the schedule reached is the
    one reported, and temporary removals add to it only while they last.

    Args:
        fraction: fraction of the kept weights removed at each update, in (0, 1).
            Defaults to 0.1.
        duration: optimizer steps a removed weight stays out, > 0; it
            returns at the first mask update at or after that, so with
            `AnnealedPruning(frequency=f)` the time out is `duration`
            rounded up to a multiple of `f`. Defaults to 50.
        criterion: which kept weights go: a `PruningCriterion` or its name.
            Defaults to `"random"`.
        end_fraction: no new removal after this fraction of the training
            (so the network ends on its permanent masks). Defaults to 0.75.

    Example:

    >>> noise = TemporaryRemoval(fraction=0.5, duration=10)
    >>> masks = noise.masks([np.ones(8)], [np.ones(8)], step=0, total_steps=100)
    >>> int(masks[0].sum()), int(noise.masks([np.ones(8)], [np.ones(8)], 10, 100)[0].sum())
    (4, 4)
    """

    def __init__(self, fraction=0.1, duration=50, criterion="random", end_fraction=0.75):
        self.fraction = _validation.check_fraction("fraction", fraction, include_one=False)
        self.duration = _validation.check_step("duration", duration, positive=True)
        self.criterion = criteria_module.get(criterion)
        self.end_fraction = _check_end_fraction(end_fraction)
        self.reset()

    def reset(self):
        """Forgets every removal in progress (at the start of `fit`)."""
        self._removals = []  # (return step, [bool array per tensor])

    def active(self, step, total_steps):
        """Whether the masks at `step` differ from the permanent ones."""
        return step < self.end_fraction * total_steps or any(
            end > step for end, _ in self._removals
        )

    def masks(self, weights, permanent, step, total_steps):
        """The masks to write at `step`: `permanent` minus the removals in force."""
        self._removals = [(end, removed) for end, removed in self._removals if end > step]
        if step < self.end_fraction * total_steps:
            scores = self.criterion.scores([np.asarray(w) for w in weights], permanent, step)
            removed = []
            for score, mask in zip(scores, permanent):
                kept = np.asarray(mask).ravel() != 0
                n_remove = math.floor(self.fraction * np.count_nonzero(kept))
                score = np.where(kept, np.asarray(score, dtype=np.float64).ravel(), np.inf)
                # Removing the lowest scores = keeping the largest negated ones.
                out = masking.keep_largest(-score, n_remove)
                removed.append(out.reshape(np.shape(mask)))
            self._removals.append((step + self.duration, removed))
        masks = [np.array(mask, dtype=np.float32) for mask in permanent]
        for _, removed in self._removals:
            for mask, out in zip(masks, removed):
                mask[out] = 0.0
        return masks

    def get_config(self):
        return {
            "fraction": self.fraction,
            "duration": self.duration,
            "criterion": _serialize(self.criterion),
            "end_fraction": self.end_fraction,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class Regrowth:
    """Drop-and-regrow at the final sparsity: SET or RigL.

    Once the schedule has reached its final sparsity, at each mask update at
    step `t` before `end_fraction * total_steps`, each weight tensor drops
    `n = floor(f(t) * kept)` of its kept weights of lowest criterion score
    (the pruning criterion: smallest |w| by default) and regrows `n` of the
    weights that were pruned before this update: chosen at random with
    `grow="random"` (SET, Mocanu et al. 2018), or those of largest loss
    gradient `|∂L/∂ŵ|` on a random batch of the training data with
    `grow="gradient"` (RigL, Evci et al. 2020; `AnnealedPruning` then needs
    `regrowth_data`). Regrown weights restart at zero (as in RigL), so they
    change nothing until trained. The drop fraction decays on a cosine,
    `f(t) = fraction / 2 * (1 + cos(pi (t - t0) / (t_end - t0)))` (RigL),
    from the first update `t0` at the final sparsity. The pruned count is
    the same after every update.

    Args:
        fraction: initial drop fraction of the kept weights, in (0, 1).
            Defaults to 0.3.
        seed: seed of the random regrowth (and of the gradient batches).
            Defaults to 0.
        end_fraction: no regrowth after this fraction of the training.
            Defaults to 0.75.
        grow: `"random"` (SET) or `"gradient"` (RigL). Defaults to `"random"`.
        batch_size: rows of `regrowth_data` the gradient is taken on, for
            `grow="gradient"`. Defaults to 256.

    Example:

    >>> regrowth = Regrowth(fraction=0.5)
    >>> w, m = [np.arange(1.0, 9.0)], [np.array([0, 0, 0, 0, 1, 1, 1, 1.0])]
    >>> new, regrown = regrowth.masks(w, m, "magnitude", step=0, start_step=0, total_steps=100)
    >>> int(new[0].sum()), int(regrown[0].sum())
    (4, 2)
    """

    def __init__(self, fraction=0.3, seed=0, end_fraction=0.75, grow="random", batch_size=256):
        self.fraction = _validation.check_fraction("fraction", fraction, include_one=False)
        self.seed = _validation.check_step("seed", seed)
        self.end_fraction = _check_end_fraction(end_fraction)
        self.grow = _validation.check_choice("grow", grow, ("random", "gradient"))
        self.batch_size = _validation.check_step("batch_size", batch_size, positive=True)

    def drop_fraction(self, step, start_step, total_steps):
        """`f(t)`: the cosine-decayed drop fraction; 0 outside `[t0, t_end)`."""
        end_step = self.end_fraction * total_steps
        if step < start_step or step >= end_step:
            return 0.0
        progress = (step - start_step) / max(end_step - start_step, 1)
        return self.fraction / 2 * (1 + math.cos(math.pi * progress))

    def masks(self, weights, permanent, criterion, step, start_step, total_steps, gradients=None):
        """`(new_masks, regrown)`: the masks after drop-and-regrow, and the
        boolean arrays of the regrown weights (whose values restart at 0).

        `gradients`: `∂L/∂ŵ` per weight tensor, needed for `grow="gradient"`
        (`keras_anneal.gradients.effective_weight_gradients`).
        """
        if self.grow == "gradient" and gradients is None:
            raise ValueError(
                "Regrowth(grow='gradient') needs the loss gradients of the weights. "
                "Received: gradients=None"
            )
        if gradients is not None and [np.shape(g) for g in gradients] != [
            np.shape(w) for w in weights
        ]:
            raise ValueError(
                "Argument `gradients` must hold one array per weight tensor, of its shape. "
                f"Received shapes {[np.shape(g) for g in gradients]} for weights of shapes "
                f"{[np.shape(w) for w in weights]}"
            )
        fraction = self.drop_fraction(step, start_step, total_steps)
        criterion = criteria_module.get(criterion)
        scores = criterion.scores([np.asarray(w) for w in weights], permanent, step)
        new_masks, regrown = [], []
        for index, (score, mask) in enumerate(zip(scores, permanent)):
            flat = np.asarray(mask).ravel() != 0
            n_kept = int(np.count_nonzero(flat))
            n = min(math.floor(fraction * n_kept), flat.size - n_kept)
            drop = masking.keep_largest(
                -np.where(flat, np.asarray(score, dtype=np.float64).ravel(), np.inf), n
            )
            if self.grow == "gradient":
                merit = np.abs(np.asarray(gradients[index], dtype=np.float64)).ravel()
            else:
                merit = np.random.default_rng([self.seed, int(step), index]).random(flat.size)
            grow = masking.keep_largest(np.where(flat, -np.inf, merit), n)
            new = (flat & ~drop) | grow
            new_masks.append(new.reshape(np.shape(mask)).astype(np.float32))
            regrown.append(grow.reshape(np.shape(mask)))
        return new_masks, regrown

    def get_config(self):
        return {"fraction": self.fraction, "seed": self.seed, "end_fraction": self.end_fraction,
                "grow": self.grow, "batch_size": self.batch_size}

    def __repr__(self):
        arguments = ", ".join(f"{key}={value!r}" for key, value in self.get_config().items())
        return f"Regrowth({arguments})"

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _serialize(criterion):
    import keras

    return keras.saving.serialize_keras_object(criterion)
