rule sample:
    input:
        unpack(sample_inputs),
        pretrained=pretrained("sample", method="method"),
    output:
        f"{RESULTS}/{{exp}}/samples/{{method}}/{{latent}}/w{{guidance}}/shard{{shard}}.npz",
    log:
        f"{RESULTS}/{{exp}}/logs/sample_{{method}}_{{latent}}_w{{guidance}}_shard{{shard}}.log",
    params:
        spec=spec("sample", method="method", latent="latent", guidance="guidance", shard="shard"),
        code=code("kaleido.sample"),
        models=lambda w, input: " ".join(f"--model {role}={path}" for role, path in input.items()
                                         if role not in ("pretrained", "conditions")),
        conditions=conditions_arg,
        device="cuda" if res("sample", "gpu") else "cpu",
    threads: res("sample", "cpus_per_task")
    resources:
        mem_mb=res("sample", "mem_mb"),
        runtime=res("sample", "runtime"),
        gpu=res("sample", "gpu"),
        cpus_per_task=res("sample", "cpus_per_task"),
    shell:
        "{PYTHON} -m kaleido.sample --config {CONFIG_FILE} --experiment {wildcards.exp} --method {wildcards.method}"
        " --latent {wildcards.latent} --guidance {wildcards.guidance} --shard {wildcards.shard} {params.models}"
        " {params.conditions}"
        " --device {params.device} --out {output} --threads {threads} > {log} 2>&1"
