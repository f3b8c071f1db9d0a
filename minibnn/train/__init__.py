"""Training: config, loop (fit/evaluate), checkpoints, history, and the run folder around them."""

from .checkpoint import CheckpointError, load_state, save_state
from .config import TrainConfig
from .history import read_history, write_history
from .loop import (LossOutput, NonFiniteLossError, cross_entropy_loss, evaluate, fit,
                   train_epoch)
from .resume import load_model, resume_training
from .runfolder import RunFolderError, recover
from .runner import RunResult, build_run, run_training

__all__ = ["TrainConfig", "LossOutput", "NonFiniteLossError", "cross_entropy_loss", "evaluate",
           "fit", "train_epoch", "run_training", "resume_training", "load_model", "build_run",
           "RunResult", "save_state", "load_state", "CheckpointError", "read_history",
           "write_history", "RunFolderError", "recover"]
