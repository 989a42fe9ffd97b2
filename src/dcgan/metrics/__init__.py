"""Sample quality in numbers: FID, KID, an Inception-Score-style score and class coverage.

    from dcgan.metrics import digit_extractor, evaluate
    result = evaluate(G, real_images_u8, digit_extractor(), num_images=10_000)

A feature extractor is an ``nn.Module`` taking uint8 images [N, C, H, W] with
``features_and_logits(images) -> (features [N, F], logits [N, K] or None)``,
``num_features``, ``name``, ``labels`` (class names for the coverage
histogram, or None) and ``cache_key`` (changes whenever its features would).
Two ship: the offline digit evaluator (``evaluator.py``) and the standard FID
Inception-v3 (``inception.py``).
"""

from .evaluate import EvalResult, evaluate, frechet_distance, kernel_distance, real_features
from .evaluator import DigitClassifier, DigitExtractor, digit_extractor, load_evaluator, train_evaluator
from .inception import InceptionExtractor, inception_extractor

__all__ = [
    "DigitClassifier",
    "DigitExtractor",
    "EvalResult",
    "InceptionExtractor",
    "digit_extractor",
    "evaluate",
    "frechet_distance",
    "inception_extractor",
    "kernel_distance",
    "load_evaluator",
    "real_features",
    "train_evaluator",
]
