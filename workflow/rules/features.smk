rule features_reference:
    input:
        lambda w: data_path(w.exp),
    output:
        f"{RESULTS}/{{exp}}/features/{{net}}/reference.npz",
    log:
        f"{RESULTS}/{{exp}}/logs/features_{{net}}_reference.log",
    params:
        code=code("metrics"),
    resources:
        mem_mb=res("features", "mem_mb"),
        runtime=res("features", "runtime"),
    shell:
        "{PYTHON} -m metrics extract --net {wildcards.net} --out {output} {input} > {log} 2>&1"


rule features_samples:
    input:
        lambda w: shard_paths(w.exp, w.method, w.latent, w.guidance),
    output:
        f"{RESULTS}/{{exp}}/features/{{net}}/{{method}}/{{latent}}/w{{guidance}}.npz",
    log:
        f"{RESULTS}/{{exp}}/logs/features_{{net}}_{{method}}_{{latent}}_w{{guidance}}.log",
    params:
        code=code("metrics"),
    resources:
        mem_mb=res("features", "mem_mb"),
        runtime=res("features", "runtime"),
    shell:
        "{PYTHON} -m metrics extract --net {wildcards.net} --out {output} {input} > {log} 2>&1"
