"""The keys of a sweep run beyond TrainConfig's fields: what is done with a run after training.

    linear_eval = { epochs = 100, lr = 0.1 }    linear evaluation of last.npz  -> lincls.json
    robustness = { limit = 1000, ... }          accuracy under corruptions     -> robustness.json
    untrained = true                            no training: linear evaluation of the network at
                                                its initialisation (its seed), e.g. the random-
                                                init rows of self-supervised tables

None of them is a training option: changing one never touches a checkpoint, and their results
are reused while their options stay the same (run.py, robustness.py).
"""

from __future__ import annotations

from .robustness import check_options, unknown_key

__all__ = ["EXTRA_RUN_KEYS", "LINEAR_EVAL_KEYS", "extras_problem"]

EXTRA_RUN_KEYS = ("linear_eval", "robustness", "untrained")
LINEAR_EVAL_KEYS = ("epochs", "lr", "batch_size", "momentum", "weight_decay", "seed",
                    "standardize")


def extras_problem(options: dict) -> str | None:
    """What is wrong with a run's extra keys, as ".key: problem" or ": problem", or None."""
    le = options.get("linear_eval")
    if le is not None:
        if not isinstance(le, dict):
            return ": linear_eval must be a table such as {epochs = 100}"
        for key in le:
            if key not in LINEAR_EVAL_KEYS:
                return f".linear_eval: {unknown_key(key, LINEAR_EVAL_KEYS)}"
    problem = check_options(options["robustness"]) if "robustness" in options else None
    if problem:
        return f".robustness: {problem}"
    untrained = options.get("untrained", False)
    if not isinstance(untrained, bool):
        return f": untrained must be true or false, got {untrained!r}"
    if untrained is True and (le is None or "robustness" in options):
        return (": an untrained run is only scored by linear_eval: give it linear_eval = {...} "
                "and no robustness (`unset` drops inherited keys)")
    return None
