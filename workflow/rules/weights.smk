# Pretrained artifacts (python -m kaleido.weights): one local job per artifact the config names. Local, so under
# --profile slurm they run on the host that runs Snakemake (which has internet where compute nodes may not), before
# any job that needs them is submitted. The record lists the file(s), their digests and whether they were verified.
localrules:
    weights,


rule weights:
    output:
        f"{RESULTS}/weights/{{artifact}}.json",
    log:
        f"{RESULTS}/logs/weights_{{artifact}}.log",
    params:
        spec=lambda w: weights_spec(w.artifact),
    shell:
        "{PYTHON} -m kaleido.weights fetch --config {CONFIG_FILE} --record {output} {wildcards.artifact} > {log} 2>&1"
