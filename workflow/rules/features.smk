rule train_domain_net:
    """The `domain` feature network: a small CNN trained on the experiment's own training images (no download)."""
    input:
        lambda w: data_path(w.exp),
    output:
        f"{RESULTS}/{{exp}}/features/domain.pt",
    log:
        f"{RESULTS}/{{exp}}/logs/train_domain_net.log",
    params:
        spec=spec("features"),
        code=code("metrics.features.domain"),
        seed=lambda w: derive_seed(w.exp, exp_cfg(w)["seed"], "domain_net"),
        steps=lambda w: exp_cfg(w)["metrics"]["feature_domain_steps"],
    resources:
        mem_mb=res("features", "mem_mb"),
        runtime=res("features", "runtime"),
    shell:
        "{PYTHON} -m metrics.features.domain train --data {input} --out {output} --seed {params.seed}"
        " --steps {params.steps} > {log} 2>&1"


def feature_weights(w):
    """The domain network's weights when it is the feature network (trained in the DAG), else nothing."""
    return {"weights": f"{RESULTS}/{w.exp}/features/domain.pt"} if w.net == "domain" else {}


def weights_flag(w, input):
    return f"--weights {input.weights}" if "weights" in input.keys() else ""


rule features_reference:
    input:
        unpack(feature_weights),
        images=lambda w: data_path(w.exp),
        pretrained=pretrained("features", net="net"),
    output:
        f"{RESULTS}/{{exp}}/features/{{net}}/reference.npz",
    log:
        f"{RESULTS}/{{exp}}/logs/features_{{net}}_reference.log",
    params:
        spec=spec("features", net="net"),
        code=code("kaleido.features"),
        weights=weights_flag,
    resources:
        mem_mb=res("features", "mem_mb"),
        runtime=res("features", "runtime"),
        gpu=res("features", "gpu"),
    shell:
        "{PYTHON} -m kaleido.features --net {wildcards.net} --config {CONFIG_FILE} --experiment {wildcards.exp}"
        " {params.weights} --out {output} {input.images} > {log} 2>&1"


rule features_samples:
    input:
        unpack(feature_weights),
        images=lambda w: shard_paths(w.exp, w.method, w.latent, w.guidance),
        pretrained=pretrained("features", net="net"),
    output:
        f"{RESULTS}/{{exp}}/features/{{net}}/{{method}}/{{latent}}/w{{guidance}}.npz",
    log:
        f"{RESULTS}/{{exp}}/logs/features_{{net}}_{{method}}_{{latent}}_w{{guidance}}.log",
    params:
        spec=spec("features", net="net"),
        code=code("kaleido.features"),
        weights=weights_flag,
    resources:
        mem_mb=res("features", "mem_mb"),
        runtime=res("features", "runtime"),
        gpu=res("features", "gpu"),
    shell:
        "{PYTHON} -m kaleido.features --net {wildcards.net} --config {CONFIG_FILE} --experiment {wildcards.exp}"
        " {params.weights} --out {output} {input.images} > {log} 2>&1"
