"""The training loop shared by every method."""

from peftlab.train.trainer import TrainConfig, TrainingDiverged, TrainOutcome, train

__all__ = ["TrainConfig", "TrainOutcome", "TrainingDiverged", "train"]
