# Config validation, resolved-config file, wildcard constraints, code hashes and every input function.
import os
import sys

from snakemake.exceptions import WorkflowError

from kaleido import config as kcfg
from kaleido.data import condition_text
from kaleido.errors import ConfigError
from metrics.io import write_text_atomic
from kaleido.methods import METHODS, NO_LATENT, ROLES
from kaleido.provenance import config_hash, source_hash
from kaleido.seeding import derive_seed
from kaleido.weights import all_artifacts, stage_artifacts

try:
    CFG = kcfg.validate(config)
except ConfigError as err:
    raise WorkflowError(f"{err}\n(fix the config file or the --config override; no job was run)") from None

RESULTS = CFG["results_dir"]
REPORTS = CFG["reports_dir"]
PYTHON = sys.executable
# MLFLOW_TRACKING_URI in the environment wins over the config (MLflow's own convention).
TRACKING_URI = os.environ.get("MLFLOW_TRACKING_URI", CFG["mlflow"]["tracking_uri"])


def _resolved_config_file() -> str:
    """The validated, override-merged config, content-addressed, so every job reads exactly what Snakemake saw.

    Its path is referenced from shell commands as a global (not a param): a config edit must rerun only the jobs
    whose own slice (the `spec` param) changed, not every job.
    """
    import yaml

    text = yaml.safe_dump(CFG, sort_keys=True)
    path = f"{RESULTS}/.configs/{config_hash(CFG)}.yaml"
    if not os.path.exists(path):
        write_text_atomic(path, text)
    return path


CONFIG_FILE = _resolved_config_file()

_NAME = r"[A-Za-z0-9][A-Za-z0-9_-]*"


wildcard_constraints:
    exp=_NAME,
    method=_NAME,
    role=_NAME,
    latent=_NAME,
    net=_NAME,
    guidance=r"[0-9][0-9.e+-]*",
    edit=_NAME,
    shard=r"[0-9][0-9][0-9]+",
    job=r"[0-9]+",
    jobs=r"[0-9]+",
    artifact=r"[A-Za-z0-9][A-Za-z0-9_.-]*",


def spec(stage, **keys):
    """Rerun trigger: hash of the config slice a job reads (see kaleido.config.stage_spec)."""
    return lambda w: config_hash(kcfg.stage_spec(CFG, w.exp, stage, **{k: getattr(w, v) for k, v in keys.items()}))


def code(entry_point):
    """Rerun trigger: hash of the project modules the job's CLI imports (Snakemake does not see them itself)."""
    return source_hash(entry_point)


def res(rule_name, key):
    table = CFG.get("resources", {})
    merged = {"mem_mb": 2000, "runtime": 30, "gpu": 0, "cpus_per_task": 1}
    merged.update(table.get("default", {}))
    merged.update(table.get(rule_name, {}))
    return merged[key]


def exp_cfg(wildcards):
    return kcfg.experiment(CFG, wildcards.exp)


# --- paths ------------------------------------------------------------------------------------------------------


def data_path(exp):
    return f"{RESULTS}/{exp}/data/train.npz"


def latents_path(exp, latent):
    return f"{RESULTS}/{exp}/latents/{latent}.npz"


def model_path(exp, role, latent):
    return f"{RESULTS}/{exp}/train/{role}/{latent}/model.pt"


def shard_paths(exp, method, latent, guidance):
    n = kcfg.num_shards(kcfg.experiment(CFG, exp))
    return [f"{RESULTS}/{exp}/samples/{method}/{latent}/w{guidance}/shard{k:03d}.npz" for k in range(n)]


def edit_paths(exp_name, ext):
    """The configured edits' outputs of an experiment (``ext``: npz image pairs or json rates)."""
    return [f"{RESULTS}/{exp_name}/edits/{method}/{latent}/w{guidance}/{edit}.{ext}"
            for method, latent, guidance, edit in kcfg.edit_runs(kcfg.experiment(CFG, exp_name))]


def color_figure_experiments():
    """Image experiments that get the colour-cluster comparison figure: MDM and Kaleido with a ``color`` latent."""
    return [name for name, exp in CFG["experiments"].items() if exp["data"]["name"] != "toy2d"
            and "color" in exp["latents"] and {"mdm", "kaleido"} <= set(exp["methods"])]


def metric_path(run):
    return f"{RESULTS}/{run.experiment}/metrics/{run.method}/{run.latent}/w{run.guidance}.json"


def weights_record(name):
    return f"{RESULTS}/weights/{name}.json"


# --- input functions --------------------------------------------------------------------------------------------


def pretrained(stage, **keys):
    """Input function: the records of the pretrained artifacts a job of ``stage`` needs (kaleido.weights), so the
    weights jobs (local rules) run before it; ``keys`` map stage_artifacts keywords to wildcard names."""
    return lambda w: [weights_record(a.name) for a in stage_artifacts(CFG, w.exp, stage,
                                                                         **{k: getattr(w, v) for k, v in keys.items()})]


def weights_spec(name):
    """Rerun trigger of a weights job: where the artifact comes from and the config's rules for it."""
    artifact = all_artifacts(CFG)[name]
    rules = CFG["weights"]
    return config_hash({"kind": artifact.kind, "source": artifact.source, "pin": rules["sha256"].get(name),
                        "allowed_unverified": name in rules["allow_unverified"]})




def latent_job_records(w):
    """The done records of a latent's extraction jobs (kaleido.config.latent_jobs; none when the stage's one job
    extracts everything)."""
    jobs = kcfg.latent_jobs(CFG, kcfg.experiment(CFG, w.exp), w.latent)
    if jobs <= 1:
        return []
    return [f"{RESULTS}/{w.exp}/latents/{w.latent}.job-{k}-of-{jobs}.json" for k in range(jobs)]


def train_inputs(w):
    inputs = {"data": data_path(w.exp)}
    if w.latent != NO_LATENT:
        inputs["latents"] = latents_path(w.exp, w.latent)
    return inputs


def sample_inputs(w):
    """The trained models a (method, latent) needs, keyed by role (the guide of autoguidance has no latent), and,
    for a captioned data set, the data index whose captions are the conditions (key ``conditions``)."""
    method = METHODS.get(w.method)
    out = {role: model_path(w.exp, role, w.latent if ROLES.get(role).uses_latent else NO_LATENT)
           for role in method.roles}
    out.update(condition_inputs(w))
    return out


def condition_inputs(w):
    """{"conditions": where the captions come from} when experiment ``w.exp``'s items are their own conditions: the
    held-out caption file ``data.eval_captions`` when set, else the data index; {} for a class-conditional set."""
    data = exp_cfg(w)["data"]
    if not condition_text(data):
        return {}
    return {"conditions": os.path.expanduser(data["eval_captions"]) if data.get("eval_captions") else data_path(w.exp)}


def conditions_arg(w, input):
    """The ``--conditions`` argument of a stage whose inputs include :func:`condition_inputs`."""
    return f"--conditions {input.conditions}" if "conditions" in input.keys() else ""


def report_outputs(flag=False):
    """Every output of the report rule; with ``flag``, the tables and PNG figures are marked for Snakemake's HTML
    report (``snakemake --report reports/report.html reports/table1.csv``) with a caption from workflow/report/."""

    def shown(path, caption, category, subcategory=None):
        if not flag:
            return path
        return report(path, caption=f"{workflow.basedir}/workflow/report/{caption}.rst", category=category,
                      subcategory=subcategory)

    outs = [shown(f"{REPORTS}/table1.csv", "table_combined", "Tables"), f"{REPORTS}/table1.md",
            f"{REPORTS}/mlflow_runs.json"]
    for name, exp in CFG["experiments"].items():
        outs += [shown(f"{REPORTS}/table1_{name}.csv", "table_paper", "Tables", name), f"{REPORTS}/table1_{name}.md",
                 f"{REPORTS}/table1_{name}.tex"]
        if exp["report"]["guidance"] != "best_fd":  # kaleido.report.paper_table writes the best-FD view beside it
            outs += [f"{REPORTS}/table1_{name}_best_fd.{ext}" for ext in ("csv", "md", "tex")]
        stem = f"{REPORTS}/figures/fid_recall_vs_guidance_{name}"
        outs += [shown(f"{stem}.png", "fid_recall", "Figures", name), f"{stem}.pdf"]
        if exp["data"]["name"] != "toy2d":  # image experiments: sample grids per guidance weight of any method
            for w in kcfg.all_guidance(exp):
                stem = f"{REPORTS}/figures/samples_{name}_w{kcfg.format_guidance(w)}"
                outs += [shown(f"{stem}.png", "samples", "Samples", name), f"{stem}.pdf"]
        if name in color_figure_experiments():
            for w in exp["guidance"]:
                stem = f"{REPORTS}/figures/colors_{name}_w{kcfg.format_guidance(w)}"
                outs += [shown(f"{stem}.png", "colors", "Samples", name), f"{stem}.pdf"]
        for method, latent, guidance, edit in kcfg.edit_runs(exp):
            stem = f"{REPORTS}/figures/edit_{name}_{method}_{latent}_w{guidance}_{edit}"
            outs += [shown(f"{stem}.png", "edits", "Latent edits", name), f"{stem}.pdf"]
    if any(exp["data"]["name"] == "toy2d" for exp in CFG["experiments"].values()):
        outs += [shown(f"{REPORTS}/figures/toy_modes.png", "toy_modes", "Figures"), f"{REPORTS}/figures/toy_modes.pdf"]
    return outs


def print_results_summary():
    """After a successful run, on stdout: each experiment's Table 1 (its Markdown) and where the rest is."""
    tables = [f"{REPORTS}/table1_{name}.md" for name in CFG["experiments"]]
    tables = [path for path in tables if os.path.exists(path)]
    if not tables:
        return
    print("\n" + "=" * 100)
    for path in tables:
        with open(path, encoding="utf-8") as handle:
            print(handle.read().rstrip() + f"\n(from {path})\n")
    print(f"All tables and figures: {REPORTS}/ (README: 'What the default run produces'); every run in MLflow: "
          f"mlflow ui --backend-store-uri {TRACKING_URI}")
    print("=" * 100)
