import numpy as np

def add_leaf_values(
    x: np.ndarray,
    feature: np.ndarray,
    threshold: np.ndarray,
    children: np.ndarray,
    missing_left: np.ndarray,
    is_leaf: np.ndarray,
    leaf_value: np.ndarray,
    roots: np.ndarray,
    depth: int,
    total: np.ndarray,
) -> None: ...
