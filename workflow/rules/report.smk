# The report runs where Snakemake runs (also under --profile slurm): it is cheap, it is MLflow's only writer, and a
# tracking server started by slurm/mlflow_server.sh on that host listens on loopback only.
localrules:
    report,


rule report:
    input:
        metrics=[metric_path(run) for run in kcfg.runs(CFG)],
        quality=[f"{RESULTS}/{name}/latents/{latent}_quality.json"
                 for name, exp in CFG["experiments"].items() for latent in exp["latents"]],
    output:
        report_outputs(),
    log:
        f"{RESULTS}/logs/report.log",
    params:
        code=code("kaleido.report"),
        tracking_uri=TRACKING_URI,
        quality=lambda w, input: f"--extra-json {' '.join(input.quality)}" if input.quality else "",
    resources:
        mem_mb=res("report", "mem_mb"),
        runtime=res("report", "runtime"),
    shell:
        "{PYTHON} -m kaleido.report --metrics {input.metrics} {params.quality} --out-dir {REPORTS}"
        " --tracking-uri {params.tracking_uri} > {log} 2>&1"
