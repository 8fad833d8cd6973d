# The report runs where Snakemake runs (also under --profile slurm): it is cheap, it is MLflow's only writer, and a
# tracking server started by slurm/mlflow_server.sh on that host listens on loopback only.
localrules:
    report,


rule report:
    input:
        metrics=[metric_path(run) for run in kcfg.runs(CFG)],
        quality=[f"{RESULTS}/{name}/latents/{latent}_quality.json"
                 for name, exp in CFG["experiments"].items() for latent in exp["latents"]],
        edits=[path for name in CFG["experiments"] for path in edit_paths(name, "npz")],
        edit_rates=[path for name in CFG["experiments"] for path in edit_paths(name, "json")],
        color_latents=[latents_path(name, "color") for name in color_figure_experiments()],
        train_logs=[f"{RESULTS}/{name}/train/{role}/{latent}/train_log.jsonl"
                    for name in CFG["experiments"] for role, latent in kcfg.trained_models(CFG, name)],
    output:
        report_outputs(flag=True),
    log:
        f"{RESULTS}/logs/report.log",
    params:
        code=code("kaleido.report"),
        tracking_uri=TRACKING_URI,
        quality=lambda w, input: f"--extra-json {' '.join([*input.quality, *input.edit_rates])}"
        if input.quality or input.edit_rates else "",
        edits=lambda w, input: f"--edits {' '.join(input.edits)}" if input.edits else "",
        plugins="".join(f" --plugin {name}" for name in CFG.get("plugins", [])),
        colors=" --color-latents " + " ".join(f"{name}={latents_path(name, 'color')}" for name in names)
        if (names := color_figure_experiments()) else "",
        table_guidance=" ".join([f"{name}={exp['report']['guidance']}" for name, exp in CFG["experiments"].items()]
                                + [f"{name}/{method}={weight}" for name, exp in CFG["experiments"].items()
                                   for method, weight in exp["report"].get("guidance_by_method", {}).items()]),
    resources:
        mem_mb=res("report", "mem_mb"),
        runtime=res("report", "runtime"),
    shell:
        "{PYTHON} -m kaleido.report --metrics {input.metrics} {params.quality} --out-dir {REPORTS}"
        " --train-logs {input.train_logs} {params.edits} --tracking-uri {params.tracking_uri}"
        "{params.colors}{params.plugins}"
        " --table-guidance {params.table_guidance} > {log} 2>&1"


onsuccess:
    print_results_summary()
