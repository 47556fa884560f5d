"""S3Delta (Hu et al., NeurIPS 2022) as a one-shot method: see :mod:`methods.s3delta.method`."""

from methods.s3delta.config import S3DeltaConfig
from methods.s3delta.method import S3Delta

__all__ = ["S3Delta", "S3DeltaConfig"]
