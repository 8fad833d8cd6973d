rule data:
    output:
        f"{RESULTS}/{{exp}}/data/train.npz",
    log:
        f"{RESULTS}/{{exp}}/logs/data.log",
    params:
        spec=spec("data"),
        code=code("kaleido.data"),
    resources:
        mem_mb=res("data", "mem_mb"),
        runtime=res("data", "runtime"),
    shell:
        "{PYTHON} -m kaleido.data --config {CONFIG_FILE} --experiment {wildcards.exp} --out {output} > {log} 2>&1"
