"""Backbones: the SEDD/RADD DiT and its Hub loading."""
from .dit import DiT, DiTConfig, as_score_model, build_dit
from .hub import BackboneNotAvailable, CheckpointError, load_dit, load_gpt2_tokenizer, save_dit

__all__ = ["DiT", "DiTConfig", "build_dit", "as_score_model", "load_dit", "save_dit", "load_gpt2_tokenizer",
           "BackboneNotAvailable", "CheckpointError"]
