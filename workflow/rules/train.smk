rule train:
    input:
        unpack(train_inputs),
    output:
        f"{RESULTS}/{{exp}}/train/{{role}}/{{latent}}/model.pt",
    log:
        f"{RESULTS}/{{exp}}/logs/train_{{role}}_{{latent}}.log",
    params:
        spec=spec("train", role="role", latent="latent"),
        code=code("kaleido.train"),
        latents=lambda w, input: f"--latents {input.latents}" if "latents" in input.keys() else "",
    threads: res("train", "cpus_per_task")
    resources:
        mem_mb=res("train", "mem_mb"),
        runtime=res("train", "runtime"),
        gpu=res("train", "gpu"),
        cpus_per_task=res("train", "cpus_per_task"),
    shell:
        "{PYTHON} -m kaleido.train --config {CONFIG_FILE} --experiment {wildcards.exp} --role {wildcards.role}"
        " --latent {wildcards.latent} --data {input.data} {params.latents} --out {output} --threads {threads}"
        " > {log} 2>&1"
