"""minibnn.optim: SGD, Adam and AdamW with torch's update rules, the binary optimizer Bop (with
`Combined` to pair it with one of the others), and stateless schedules.

    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    sched = optim.LRScheduler(opt, optim.cosine(0.1, total=epochs))
    for epoch in range(epochs):
        sched.step(epoch)
        ...
"""

from . import bop, optimizers, schedules
from .bop import Bop, Combined, split_binary_parameters
from .optimizers import SGD, Adam, AdamW, Optimizer
from .schedules import (LRScheduler, ParamSchedule, Schedule, constant, cosine, ede_schedule,
                        ede_tk, linear_decay, linear_warmup, multistep, step_decay)

__all__ = [
    "optimizers", "schedules", "bop", "Optimizer", "SGD", "Adam", "AdamW", "Bop", "Combined",
    "split_binary_parameters",
    "Schedule", "ParamSchedule", "LRScheduler", "constant", "cosine", "linear_decay",
    "step_decay", "multistep", "linear_warmup", "ede_tk", "ede_schedule",
]
