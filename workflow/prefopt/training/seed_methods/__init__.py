"""Seed methods the paper builds on: listwise lambda-weighted DPO (`listwise`), DCKD and ADPA
distillation (`distill`), and the trainer that runs them (`trainer`)."""
