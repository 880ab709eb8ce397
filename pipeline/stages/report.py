"""`stage=report`: (re)build `run_dir/report.html` from the files a run holds, without a model.

`python -m pipeline.run stage=report run_dir=<run folder> [data_dir=<its dataset, for ARC demonstrations>]`

stage=train, eval and eval_arc write it at their end already (`report.enabled`); this rebuilds it, e.g. after
copying a run folder from S3. What it shows and how: `pipeline.results.report`.
"""
from pipeline.options import Options
from pipeline.results import report


def run(cfg) -> dict:
    page = report.build(cfg.run_dir, cfg.data_dir, Options.of(cfg).report)
    print(f"report: {page} (open it in a browser; it needs the {report.DATA}/ folder beside it)", flush=True)
    return {"report": page}
