"""Site commissioning: fit, judge and adopt a site profile from a hospital's own confirmed cases.

    cases       read the commissioning CSV and turn each row into a case (features of its assessable slices)
    folds       cross-validation folds grouped by patient
    head        the site head: a logistic regression on the model's features, pulled towards the shipped head
    fitting     a profile from cases, with out-of-fold predictions for its figures
    figures     AUC with a bootstrap interval, sensitivity, specificity, alerts per 100 cases
    judge       the candidate against the current profile on the same folds; adopt only what is not worse
"""
