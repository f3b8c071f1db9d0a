"""minibnn.evaluate: how good a trained model is, beyond its training log.

    accuracy.py    accuracy and loss of a float model on a dataset split (the training loop's
                   `evaluate` over `data.eval_loader`), of an exported PackedModel, and the
                   float-vs-packed prediction agreement
    robustness.py  accuracy under seeded corruptions, CE / relative CE and the mCE
                   (Hendrycks & Dietterich 2019)
    linear.py      the linear-evaluation protocol of self-supervised learning (frozen backbone,
                   linear classifier on its embedding)

    from minibnn.evaluate import evaluate_split, corruption_accuracy, format_table
    result = evaluate_split(model, val)             # {"val_loss", "val_accuracy", ...}
    tables = corruption_accuracy({"lcr": model, "base": baseline}, val, limit=1000)
    print(format_table(tables["lcr"], tables["base"]))

The `minibnn eval`, `export --check`, `robustness` and `linear-eval` commands only parse their
arguments, load the checkpoint and dataset, and call these functions.
"""

from .accuracy import (Agreement, evaluate_packed, evaluate_split, images_accuracy,
                       packed_agreement, packed_normalisation)
from .linear import extract_embeddings, linear_evaluation, train_linear
from .robustness import (CHUNK, RobustnessTable, corruption_accuracy, corruption_errors,
                         format_table, mean_corruption_error, relative_corruption_errors,
                         summarize, write_results)

__all__ = ["evaluate_split", "images_accuracy", "evaluate_packed", "packed_normalisation",
           "packed_agreement", "Agreement", "extract_embeddings", "train_linear",
           "linear_evaluation", "RobustnessTable", "corruption_accuracy", "corruption_errors",
           "relative_corruption_errors", "mean_corruption_error", "summarize", "format_table",
           "write_results", "CHUNK"]
