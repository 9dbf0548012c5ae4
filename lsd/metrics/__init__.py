"""Metrics of the harness: perplexity (generative and oracle), unigram entropy, Frechet
distances (FID and digits-classifier features), countdown error rates, bootstrap
intervals and result records. Heavy dependencies (transformers, pytorch-fid, scikit-learn)
are imported only when the function that needs them runs.
"""
from .countdown import countdown_error_rates, countdown_violations, jys_code_error_rate
from .digits_features import LABEL as DIGITS_FRECHET_LABEL
from .digits_features import DigitsClassifier, digits_frechet, digits_frechet_distance
from .entropy import unigram_entropy, unigram_entropy_per_sample
from .frechet import (FeatureExtractorUnavailable, InceptionFeatures, check_inception_weights, feature_statistics,
                      fid_from_features, frechet_distance, frechet_distance_features, frechet_fit,
                      inception_weights_path,
                      load_statistics, reference_statistics, save_statistics)
from .intervals import (Interval, bootstrap_interval, bootstrap_ratio_exp_interval, paired_interval, rate_interval,
                        seed_interval)
from .oracle import oracle_perplexity
from .judges import DEFAULT_EVALUATOR, EvaluatorUnavailable, smollm2_gguf_path
from .perplexity import CausalLMEvaluator, NLLScores, PerplexityResult, perplexities, same_vocabulary
from .records import RecordError, config_hash, load_records, make_record, record_filename, write_record

__all__ = [
    "CausalLMEvaluator", "EvaluatorUnavailable", "NLLScores", "PerplexityResult", "perplexities", "same_vocabulary",
    "smollm2_gguf_path", "DEFAULT_EVALUATOR", "oracle_perplexity", "unigram_entropy", "unigram_entropy_per_sample",
    "frechet_distance", "frechet_distance_features", "frechet_fit", "feature_statistics", "fid_from_features",
    "InceptionFeatures",
    "FeatureExtractorUnavailable", "inception_weights_path", "check_inception_weights", "reference_statistics",
    "save_statistics", "load_statistics", "DigitsClassifier", "digits_frechet", "digits_frechet_distance",
    "DIGITS_FRECHET_LABEL",
    "countdown_error_rates", "countdown_violations", "jys_code_error_rate", "Interval", "bootstrap_interval",
    "bootstrap_ratio_exp_interval", "seed_interval", "paired_interval", "rate_interval", "make_record",
    "write_record", "load_records",
    "record_filename", "config_hash", "RecordError",
]
