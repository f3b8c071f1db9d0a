"""Training: config, loop (fit), history, and the run folder around them.

Checkpoint files are read and written by minibnn.checkpoint (below every layer); losses, the
Recipe interface and validation (`evaluate`) belong to the methods (minibnn.methods).
"""

from .config import TrainConfig
from .history import read_history, write_history
from .loop import NonFiniteLossError, fit, train_epoch
from .presets import s2bnn_config
from .resume import load_model, load_trained, resume_training
from .runfolder import RunFolderError, recover
from .runner import RunResult, build_run, run_training

__all__ = ["TrainConfig", "NonFiniteLossError", "fit", "train_epoch", "run_training",
           "resume_training", "load_model", "load_trained", "build_run", "RunResult",
           "read_history", "write_history", "RunFolderError", "recover", "s2bnn_config"]
