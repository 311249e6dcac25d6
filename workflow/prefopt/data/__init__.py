"""Inputs of the pipeline: the sources downloaded and verified (`download`), and the preference
pairs, AlpacaEval prompts and MT-Bench questions prepared from them (`prepare`)."""
