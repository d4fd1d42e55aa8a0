"""Bag-of-words baseline for the ASA data: tf-idf (1-2 grams) + logistic regression, fit TRAIN, ROC AUC on TEST.

If words alone separated tool from non-tool prompts perfectly, a probe's AUC would say nothing about the model.
Run: ``.venv/bin/python scripts/asa_bow_baseline.py``.
"""

from __future__ import annotations

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from steerlab.data.asa_data import ASA_DOMAINS, load_asa_split


def main() -> None:
    train, test = load_asa_split("train"), load_asa_split("test")
    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=1, lowercase=True)
    xtr = vec.fit_transform([e.prompt for e in train])
    xte = vec.transform([e.prompt for e in test])
    clf = LogisticRegression(max_iter=2000, C=1.0).fit(xtr, [e.label for e in train])
    s = clf.predict_proba(xte)[:, 1]
    y = np.array([e.label for e in test])
    print(f"bag-of-words AUC on TEST (all): {roc_auc_score(y, s):.3f}")
    for d in ASA_DOMAINS:
        m = np.array([e.domain == d for e in test])
        print(f"  {d:<12} {roc_auc_score(y[m], s[m]):.3f}")


if __name__ == "__main__":
    main()
