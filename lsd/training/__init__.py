"""Training of the small backbones (`lsd train --recipe NAME`): the losses (`losses`), the
recipes and the networks they build (`recipes`), the resumable loop (`trainer`) and the
subcommand (`command`)."""
from .losses import LOSSES, diffusion_loss, masked_cross_entropy, sample_times, score_entropy
from .recipes import ARCHITECTURES, RECIPES, build_network, get_recipe, make_task, model_config
from .trainer import FORMAT, LOG_FILE, STATE_FILE, TRAINING_FILE, Trainer, draw_batch, lr_at, train

__all__ = ["ARCHITECTURES", "FORMAT", "LOG_FILE", "LOSSES", "RECIPES", "STATE_FILE", "TRAINING_FILE", "Trainer",
           "build_network", "diffusion_loss", "draw_batch", "get_recipe", "lr_at", "make_task",
           "masked_cross_entropy", "model_config", "sample_times", "score_entropy", "train"]
