"""Small datasets for examples and the CLI: scikit-learn's digits and breast cancer, synthetic.

scikit-learn is needed for the bundled sets only (``pip install -e '.[data]'``) and imported
when one is loaded. Splitting and standardization are plain NumPy, seeded.
"""

import numpy as np

from gpunn._checks import check_int, check_number

# The registry: name -> loader(seed) giving (X, y); the CLI's --dataset reads it. A new dataset
# is one function here under @_dataset.
DATASETS = {}


def _dataset(loader):
    """Register ``loader`` under its function name."""
    DATASETS[loader.__name__] = loader
    return loader


def _sklearn_datasets():
    try:
        from sklearn import datasets
    except ImportError as exc:
        raise ImportError("the digits and breast_cancer datasets need scikit-learn: install "
                          "the 'data' extra, pip install -e '.[data]'") from exc
    return datasets


@_dataset
def digits(seed=0):
    """8x8 handwritten digits: ``X`` (1797, 64) pixel intensities 0..16, ``y`` labels 0..9
    (fixed data: ``seed`` is not used)."""
    data = _sklearn_datasets().load_digits()
    return data.data.astype(np.float64), data.target.astype(np.int64)


@_dataset
def breast_cancer(seed=0):
    """Wisconsin breast cancer: ``X`` (569, 30) features, ``y`` 0 (malignant) / 1 (benign)
    (fixed data: ``seed`` is not used)."""
    data = _sklearn_datasets().load_breast_cancer()
    return data.data.astype(np.float64), data.target.astype(np.int64)


@_dataset
def synthetic(n_samples=1000, n_features=20, n_classes=3, seed=0):
    """Gaussian blobs around random class centres, with a seeded nonlinear twist.

    Args:
        n_samples: rows (>= n_classes).
        n_features: columns (>= 2).
        n_classes: classes (>= 2), labels ``0 .. n_classes - 1`` in equal shares.
        seed: NumPy seed.

    Returns:
        ``(X, y)``: float64 ``(n_samples, n_features)`` and int64 ``(n_samples,)``.
    """
    n_classes = check_int("n_classes", n_classes, low=2)
    n_samples = check_int("n_samples", n_samples, low=n_classes)
    n_features = check_int("n_features", n_features, low=2)
    rng = np.random.default_rng(check_int("seed", seed, low=0))
    y = np.arange(n_samples) % n_classes
    rng.shuffle(y)
    centres = rng.normal(0.0, 2.0, size=(n_classes, n_features))
    X = centres[y] + rng.normal(size=(n_samples, n_features))
    X[:, 1] += 0.5 * np.sin(2.0 * X[:, 0])
    return X, y.astype(np.int64)


def load(name, seed=0):
    """A dataset by name (see ``DATASETS``): ``(X, y)``."""
    if name not in DATASETS:
        raise ValueError(f"dataset: expected one of {list(DATASETS)}, got {name!r}")
    return DATASETS[name](seed=seed)


def train_test_split(X, y, test_size=0.25, seed=0, stratify=True, name="test_size"):
    """Seeded, stratified split: each class keeps its share in both parts.

    Args:
        X, y: arrays with the same number of rows; ``y`` holds class labels.
        test_size: fraction of the rows of every class held out, in (0, 1).
        seed: NumPy seed of the shuffle.
        stratify: False for a plain random split (regression targets).
        name: what errors call ``test_size`` (the caller's name for it).

    Returns:
        ``(X_train, X_test, y_train, y_test)``.
    """
    test_size = check_number(name, test_size, low=0.0, high=1.0, low_open=True,
                             high_open=True)
    rng = np.random.default_rng(check_int("seed", seed, low=0))
    test = []
    groups = np.unique(y, return_inverse=True)[1] if stratify else np.zeros(len(y), int)
    for group in np.unique(groups):
        rows = rng.permutation(np.flatnonzero(groups == group))
        test.extend(rows[:round(test_size * rows.size)])
    is_test = np.zeros(len(y), dtype=bool)
    is_test[test] = True
    if is_test.all() or not is_test.any():
        why = ""
        if stratify:
            sizes = np.bincount(groups)
            why = (f" (stratified: each of the {sizes.size} classes holds out "
                   f"round({test_size} x its rows), and they have {sizes.min()} to "
                   f"{sizes.max()} rows)")
        raise ValueError(f"{name}: expected a split leaving rows on both sides, got "
                         f"{test_size} of {len(y)} rows{why}")
    return X[~is_test], X[is_test], y[~is_test], y[is_test]


def standardize(train, *others):
    """Scale features to zero mean and unit variance using the statistics of ``train``.

    Constant features (zero variance) are only centred.

    Returns:
        The standardized ``train`` followed by each of ``others``.
    """
    mean, std = train.mean(axis=0), train.std(axis=0)
    std[std == 0] = 1.0
    return tuple((a - mean) / std for a in (train, *others))
