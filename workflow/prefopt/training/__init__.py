"""Training: the pairwise losses (`losses`, one registry), the TRL trainer that uses them
(`trainer`), the shared reference log-prob cache, per-step diagnostics, checkpoint/resume, DDP,
and the seed methods (`seed_methods`: listwise lambda-DPO, DCKD, ADPA)."""
