rule evaluate:
    input:
        real=lambda w: f"{RESULTS}/{w.exp}/features/{exp_cfg(w)['metrics']['feature_net']}/reference.npz",
        fake=lambda w: f"{RESULTS}/{w.exp}/features/{exp_cfg(w)['metrics']['feature_net']}/{w.method}/{w.latent}/w{w.guidance}.npz",
        samples=lambda w: shard_paths(w.exp, w.method, w.latent, w.guidance),
        extra=lambda w: [path for net in exp_cfg(w)["metrics"]["extra_feature_nets"] for path in (
            f"{RESULTS}/{w.exp}/features/{net}/reference.npz",
            f"{RESULTS}/{w.exp}/features/{net}/{w.method}/{w.latent}/w{w.guidance}.npz")],
    output:
        f"{RESULTS}/{{exp}}/metrics/{{method}}/{{latent}}/w{{guidance}}.json",
    log:
        f"{RESULTS}/{{exp}}/logs/evaluate_{{method}}_{{latent}}_w{{guidance}}.log",
    params:
        spec=spec("evaluate", method="method", latent="latent", guidance="guidance"),
        code=code("kaleido.evaluate"),
        extra=lambda w, input: "".join(f" --extra {net} {real} {fake}" for net, real, fake in zip(
            exp_cfg(w)["metrics"]["extra_feature_nets"], input.extra[::2], input.extra[1::2])),
    resources:
        mem_mb=res("evaluate", "mem_mb"),
        runtime=res("evaluate", "runtime"),
    shell:
        "{PYTHON} -m kaleido.evaluate --config {CONFIG_FILE} --experiment {wildcards.exp} --method {wildcards.method}"
        " --latent {wildcards.latent} --guidance {wildcards.guidance} --real {input.real} --fake {input.fake}"
        "{params.extra} --out {output} {input.samples} > {log} 2>&1"
