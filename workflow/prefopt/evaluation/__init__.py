"""Evaluation beyond the judges: held-out preference accuracy, margins and log-prob shifts
(`heldout`)."""
