"""Snakemake wiring: one seed-method cache (listwise reference, teacher top-k, student
responses, teacher advantage); the computation lives in prefopt.training.seed_methods.trainer."""

from prefopt.runtime import start_gpu_job, versions
from prefopt.training.seed_methods import trainer as st


def main() -> None:
    log = start_gpu_job(snakemake)
    inp, out, params = snakemake.input, snakemake.output, snakemake.params
    training = params.training
    if params.step == "listwise_reference":
        info = st.cache_listwise_reference(inp.model, inp.rows, out[0], training)
    elif params.step == "teacher_topk":
        info = st.cache_teacher_topk(
            inp.teacher, inp.pairs, out[0], training, params.variant["topk"]
        )
    elif params.step == "student_responses":
        info = st.generate_student_responses(
            inp.student,
            inp.pairs,
            out[0],
            training,
            params.variant["student_generation"],
            seed=int(snakemake.wildcards.seed),
        )
    elif params.step == "teacher_advantage":
        info = st.cache_teacher_advantage(
            inp.teacher,
            inp.reference_teacher,
            inp.responses,
            out[0],
            training,
            params.variant["topk"],
        )
    else:
        raise ValueError(f"unknown step {params.step!r}")
    log.info("%s: %s; versions %s", params.step, info, versions())


if __name__ == "__main__":
    main()
