"""Zeroth-order (forward-only) training: the estimator, the ZO step, the first-order head, the
linear probe and the subspace bases."""
