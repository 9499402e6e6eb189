"""The training loop shared by every method."""

from peftlab.train.stacked import NotStackable, RunStack
from peftlab.train.trainer import TrainConfig, TrainingDiverged, TrainOutcome, train

__all__ = ["NotStackable", "RunStack", "TrainConfig", "TrainOutcome", "TrainingDiverged", "train"]
