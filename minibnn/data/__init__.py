"""L0 data layer: NumPy arrays in, NumPy arrays out. Imports no other minibnn module.

formats (IDX / CIFAR readers, MD5), datasets (registry; `mnist-t10k` is bundled and is NOT the
standard 60k/10k MNIST protocol), transforms, loader, corruptions.
"""

from .corruptions import CORRUPTIONS, Corruption, corrupt
from .datasets import (DEFAULT_DATASET, NORMALIZATION, Dataset, DatasetInfo, Splits, cache_dir,
                       data_roots, dataset_info, find_dataset_dir, list_datasets, load_dataset,
                       make_synthetic, stratified_split)
from .formats import (PUBLISHED_MD5, DataError, check_md5, md5sum, read_cifar_batch,
                      read_cifar_meta, read_idx, read_idx_images, read_idx_labels)
from .loader import BatchLoader, eval_loader
from .transforms import (Compose, TwoViewAugment, color_jitter, gaussian_blur, gaussian_noise,
                         normalize, pad_random_crop, random_grayscale, random_hflip,
                         random_resized_crop, standard_augment, to_float, train_augment)

__all__ = [
    # formats
    "DataError", "PUBLISHED_MD5", "md5sum", "check_md5", "read_idx", "read_idx_images",
    "read_idx_labels", "read_cifar_batch", "read_cifar_meta",
    # datasets
    "Dataset", "DatasetInfo", "dataset_info", "Splits", "DEFAULT_DATASET", "NORMALIZATION", "list_datasets", "load_dataset",
    "data_roots", "cache_dir", "find_dataset_dir", "stratified_split", "make_synthetic",
    # transforms
    "Compose", "to_float", "normalize", "pad_random_crop", "random_hflip", "gaussian_noise",
    "random_resized_crop", "color_jitter", "random_grayscale", "gaussian_blur", "standard_augment", "train_augment",
    "TwoViewAugment",
    # loader
    "BatchLoader", "eval_loader",
    # corruptions
    "Corruption", "CORRUPTIONS", "corrupt",
]
