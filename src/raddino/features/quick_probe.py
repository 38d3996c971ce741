"""A quick linear probe on feature arrays: what early stopping (``pretrain``'s validation probe) and the
int8 export's gate score an encoder by, where ``raddino probe``'s full protocol would be too slow."""

from __future__ import annotations

import numpy as np


def quick_probe_macro_auprc(
    train: np.ndarray, train_labels: np.ndarray, test: np.ndarray, test_labels: np.ndarray
) -> float:
    """Macro AUPRC over label columns of an L2-regularised logistic regression (scikit-learn, L-BFGS).

    Features are standardised with the training rows' statistics. Labels are 0/1 with NaN for missing
    (rows missing a column's label are left out of that column); a column without both classes among the
    training or the test rows is skipped.

    Args:
        train: (N, D) training features.
        train_labels: (N, L) their labels.
        test: (M, D) features to score.
        test_labels: (M, L) their labels.

    Returns:
        The mean AUPRC over the usable columns, NaN when none is usable.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import average_precision_score
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train)
    train_x, test_x = scaler.transform(train), scaler.transform(test)
    scores = []
    for column in range(train_labels.shape[1]):
        fit_rows, score_rows = np.isfinite(train_labels[:, column]), np.isfinite(test_labels[:, column])
        y_train, y_test = train_labels[fit_rows, column], test_labels[score_rows, column]
        if len(np.unique(y_train)) < 2 or len(np.unique(y_test)) < 2:
            continue
        head = LogisticRegression(max_iter=2000).fit(train_x[fit_rows], y_train)
        scores.append(average_precision_score(y_test, head.predict_proba(test_x[score_rows])[:, 1]))
    return float(np.mean(scores)) if scores else float("nan")
