"""Tools a person runs by hand, beside the pipeline: speed benchmarks of training and generation,
the fault campaigns (config faults, corrupt inputs, kill-anywhere), the GPU smoke check and the
SLURM site-profile writer. Behind `workflow/bin/`; the pipeline (`prefopt`) never imports this
package (tests/unit/test_layout.py)."""
