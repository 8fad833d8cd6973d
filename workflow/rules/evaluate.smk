rule evaluate:
    input:
        real=lambda w: f"{RESULTS}/{w.exp}/features/{exp_cfg(w)['metrics']['feature_net']}/reference.npz",
        fake=lambda w: f"{RESULTS}/{w.exp}/features/{exp_cfg(w)['metrics']['feature_net']}/{w.method}/{w.latent}/w{w.guidance}.npz",
        samples=lambda w: shard_paths(w.exp, w.method, w.latent, w.guidance),
    output:
        f"{RESULTS}/{{exp}}/metrics/{{method}}/{{latent}}/w{{guidance}}.json",
    log:
        f"{RESULTS}/{{exp}}/logs/evaluate_{{method}}_{{latent}}_w{{guidance}}.log",
    params:
        spec=spec("evaluate", method="method", latent="latent", guidance="guidance"),
        code=code("kaleido.evaluate"),
    resources:
        mem_mb=res("evaluate", "mem_mb"),
        runtime=res("evaluate", "runtime"),
    shell:
        "{PYTHON} -m kaleido.evaluate --config {CONFIG_FILE} --experiment {wildcards.exp} --method {wildcards.method}"
        " --latent {wildcards.latent} --guidance {wildcards.guidance} --real {input.real} --fake {input.fake}"
        " --out {output} {input.samples} > {log} 2>&1"
