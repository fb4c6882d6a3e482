"""Container images: references, the `[images]` section, pulling (skopeo), the unpacked cache (umoci)."""

from __future__ import annotations

from corral.images.cache import ImageCache, ImageLease
from corral.images.config import ImagesConfig, RegistryConfig
from corral.images.pull import ImageError, ImageInfo, ImageNotFound, RegistryUnreachable
from corral.images.reference import ImageReference, parse_reference, rewrite

__all__ = [
    "ImageCache", "ImageError", "ImageInfo", "ImageLease", "ImageNotFound", "ImageReference", "ImagesConfig",
    "RegistryConfig", "RegistryUnreachable", "parse_reference", "rewrite",
]
