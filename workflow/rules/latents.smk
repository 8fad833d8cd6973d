rule latents_job:
    input:
        data=lambda w: data_path(w.exp),
        pretrained=pretrained("latents", latent="latent"),
    output:
        # consumed by the `latents` job; deleted after it, so that a removed token file reruns the extraction jobs
        temp(f"{RESULTS}/{{exp}}/latents/{{latent}}.job-{{job}}-of-{{jobs}}.json"),
    log:
        f"{RESULTS}/{{exp}}/logs/latents_{{latent}}_job{{job}}-of-{{jobs}}.log",
    params:
        spec=spec("latents", latent="latent"),
        code=code("kaleido.latents"),
        out=lambda w: latents_path(w.exp, w.latent),
    threads: res("latents", "cpus_per_task")
    resources:
        mem_mb=res("latents", "mem_mb"),
        runtime=res("latents", "runtime"),
        gpu=res("latents", "gpu"),
        cpus_per_task=res("latents", "cpus_per_task"),
    shell:
        "{PYTHON} -m kaleido.latents --config {CONFIG_FILE} --experiment {wildcards.exp} --latent {wildcards.latent}"
        " --data {input.data} --out {params.out} --job {wildcards.job} --jobs {wildcards.jobs} --done {output}"
        " --workers {threads} > {log} 2>&1"


rule latents:
    input:
        data=lambda w: data_path(w.exp),
        pretrained=pretrained("latents", latent="latent"),
        jobs=latent_job_records,
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
        # after extraction jobs this job only reads their parts and tokenizes: no GPU
        gpu=lambda w: 0 if latent_job_records(w) else res("latents", "gpu"),
        cpus_per_task=res("latents", "cpus_per_task"),
    shell:
        "{PYTHON} -m kaleido.latents --config {CONFIG_FILE} --experiment {wildcards.exp} --latent {wildcards.latent}"
        " --data {input.data} --out {output.tokens} --quality {output.quality} --workers {threads} > {log} 2>&1"
