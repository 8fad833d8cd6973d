rule edit:
    input:
        unpack(condition_inputs),
        model=lambda w: model_path(w.exp, METHODS.get(w.method).model, w.latent),
        latents=lambda w: latents_path(w.exp, w.latent),
        samples=lambda w: shard_paths(w.exp, w.method, w.latent, w.guidance)[0],
        pretrained=pretrained("edit", method="method", latent="latent"),
    output:
        pairs=f"{RESULTS}/{{exp}}/edits/{{method}}/{{latent}}/w{{guidance}}/{{edit}}.npz",
        rates=f"{RESULTS}/{{exp}}/edits/{{method}}/{{latent}}/w{{guidance}}/{{edit}}.json",
    log:
        f"{RESULTS}/{{exp}}/logs/edit_{{method}}_{{latent}}_w{{guidance}}_{{edit}}.log",
    params:
        spec=spec("edit", method="method", latent="latent", guidance="guidance", edit="edit"),
        code=code("kaleido.edit"),
        device="cuda" if res("sample", "gpu") else "cpu",
        conditions=conditions_arg,
    threads: res("sample", "cpus_per_task")
    resources:
        mem_mb=res("sample", "mem_mb"),
        runtime=res("sample", "runtime"),
        gpu=res("sample", "gpu"),
        cpus_per_task=res("sample", "cpus_per_task"),
    shell:
        "{PYTHON} -m kaleido.edit --config {CONFIG_FILE} --experiment {wildcards.exp} --method {wildcards.method}"
        " --latent {wildcards.latent} --guidance {wildcards.guidance} --edit {wildcards.edit} --model {input.model}"
        " --latents {input.latents} --samples {input.samples} --device {params.device} --quiet --out {output.pairs}"
        " --json {output.rates} --threads {threads} {params.conditions} > {log} 2>&1"
