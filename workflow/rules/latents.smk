rule latents:
    input:
        data=lambda w: data_path(w.exp),
        pretrained=pretrained("latents", latent="latent"),
    output:
        tokens=f"{RESULTS}/{{exp}}/latents/{{latent}}.npz",
        quality=f"{RESULTS}/{{exp}}/latents/{{latent}}_quality.json",
    log:
        f"{RESULTS}/{{exp}}/logs/latents_{{latent}}.log",
    params:
        spec=spec("latents", latent="latent"),
        code=code("kaleido.latents"),
    threads: res("latents", "cpus_per_task")
    resources:
        mem_mb=res("latents", "mem_mb"),
        runtime=res("latents", "runtime"),
    shell:
        "{PYTHON} -m kaleido.latents --config {CONFIG_FILE} --experiment {wildcards.exp} --latent {wildcards.latent}"
        " --data {input.data} --out {output.tokens} --quality {output.quality} --workers {threads} > {log} 2>&1"
