def train_launcher():
    """`python -m kaleido.train` on CPU or one GPU; torchrun with one process per GPU when resources.train.gpu > 1
    (one node; every rank derives the same global batch, so results do not depend on the GPU count)."""
    gpus = int(res("train", "gpu"))
    if gpus > 1:
        return f"{PYTHON} -m torch.distributed.run --standalone --nproc_per_node {gpus} -m kaleido.train --device cuda"
    return f"{PYTHON} -m kaleido.train --device {'cuda' if gpus == 1 else 'cpu'}"


rule train:
    input:
        unpack(train_inputs),
        pretrained=pretrained("train", role="role"),
    output:
        model=f"{RESULTS}/{{exp}}/train/{{role}}/{{latent}}/model.pt",
        curves=f"{RESULTS}/{{exp}}/train/{{role}}/{{latent}}/train_log.jsonl",
    log:
        f"{RESULTS}/{{exp}}/logs/train_{{role}}_{{latent}}.log",
    params:
        spec=spec("train", role="role", latent="latent"),
        code=code("kaleido.train"),
        latents=lambda w, input: f"--latents {input.latents}" if "latents" in input.keys() else "",
        launch=train_launcher(),
        # torch threads (and so data-loader workers) per training process: the job's CPUs shared by its ranks
        per_process=lambda w, threads: max(1, threads // max(1, int(res("train", "gpu")))),
    threads: res("train", "cpus_per_task")
    resources:
        mem_mb=res("train", "mem_mb"),
        runtime=res("train", "runtime"),
        gpu=res("train", "gpu"),
        cpus_per_task=res("train", "cpus_per_task"),
    shell:
        "{params.launch} --config {CONFIG_FILE} --experiment {wildcards.exp} --role {wildcards.role}"
        " --latent {wildcards.latent} --data {input.data} {params.latents} --out {output.model} --threads {params.per_process}"
        " > {log} 2>&1"
