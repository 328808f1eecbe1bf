"""
``CheckedDatasetMapper``: Detectron2's ``DatasetMapper`` whose errors name the image.

The images are checked before training (``checks.check_images``), but a file can still change
or vanish during a long run, and PIL's error for a truncated file ("image file is truncated (3
bytes not processed)") does not say which file it was.
"""

from detectron2.data import DatasetMapper

__all__ = ["CheckedDatasetMapper", "ImageLoadError"]


class ImageLoadError(RuntimeError):
    """Mapping one dataset dict failed; the message names its file and the original error."""


class CheckedDatasetMapper(DatasetMapper):
    """
    ``DatasetMapper`` (same arguments, yacs ``CheckedDatasetMapper(cfg, is_train)`` or
    LazyConfig ``L(CheckedDatasetMapper)(...)``) that re-raises any error of mapping a dataset
    dict as ``ImageLoadError`` naming its ``file_name`` and ``image_id``, chained to the
    original exception.
    """

    def __call__(self, dataset_dict):
        try:
            return super().__call__(dataset_dict)
        except Exception as e:
            raise ImageLoadError(
                f"Cannot load image {dataset_dict.get('file_name')!r} (image_id "
                f"{dataset_dict.get('image_id')!r}): {type(e).__name__}: {e}"
            ) from e
