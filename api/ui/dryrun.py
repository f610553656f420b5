"""The designer's dry-run page: pick a script kept with the variant, change its choices in a
table if need be, run it on a throw-away copy of the deployed procedure, and read the path,
who gets each step, the due dates, the documents, the notifications and what went wrong."""
from __future__ import annotations

import json

from flask import Blueprint, render_template, request

from engine.errors import DefinitionInvalid, NotFound

from .. import catalogues
from ..routes.dryrun import kept_scripts, recorded, run
from .designer import _require_designer
from .i18n import lang, say
from .web import engine, principal, signed_in

blp = Blueprint("designer_dryrun", __name__, template_folder="templates")
MAX_ROWS = 60


def _steps_from_form() -> tuple[list[dict], list[str]]:
    """The table of choices as the designer left it; a row whose data is not a JSON object
    is named."""
    steps, problems = [], []
    for number in range(1, MAX_ROWS + 1):
        task = request.form.get(f"task-{number}", "").strip()
        if not task:
            continue
        text = request.form.get(f"data-{number}", "").strip() or "{}"
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            problems.append(say("dryrun.data_not_object", {"step": number, "task": task})
                            or f"step {number}: data is not a JSON object")
            continue
        step: dict = {"task": task, "data": data}
        for key in ("by", "at", "wait"):
            value = request.form.get(f"{key}-{number}", "").strip()
            if value:
                step[key] = value
        if request.form.get(f"every-{number}"):
            step["every"] = True
        steps.append(step)
    return steps, problems


def position_label(position: str) -> str:
    vietnamese, english = catalogues.position_words(position)
    return english if lang() == "en" else vietnamese


def finding_text(finding: dict) -> str:
    return say(finding["code"], finding.get("params")) or finding["message"]


@blp.route("/designer/<string:variant>/dry-run", methods=["GET", "POST"])
@signed_in
def dry_run(variant):
    _require_designer(variant)
    scripts = kept_scripts(variant)
    instance_id = request.values.get("instance", "").strip()
    chosen_name = request.values.get("script") or (scripts[0]["name"] if scripts else None)
    chosen = next((s for s in scripts if s["name"] == chosen_name), None)
    table = dict(chosen["script"]) if chosen else {}
    if instance_id:                     # a case's path, as it went, instead of a script
        case_variant, table = recorded(instance_id, principal())
        if case_variant != variant:
            raise NotFound(f"instance {instance_id} does not exist",
                           code="instance.not_found", instance_id=instance_id)
        chosen = None
    result, problems = None, []
    if request.method == "POST":
        steps, problems = _steps_from_form()
        table.update({"steps": steps, "started_by": request.form.get("started_by", "").strip(),
                      "starts_at": request.form.get("starts_at", "").strip(),
                      "process": request.form.get("process", "").strip()})
        if not problems:
            try:
                result = run(variant, {"script": chosen_name, **table} if chosen
                             else table)
            except DefinitionInvalid as exc:
                problems = [say(p.code, p.params) or str(p) for p in exc.problems]
    rows = [{**step, "data_text": json.dumps(step.get("data") or {}, ensure_ascii=False)}
            for step in table.get("steps", [])]
    processes = [(d.key, d.name or d.key)
                 for d in engine().repository.latest_versions(variant)]
    return render_template("dryrun.html", variant=variant, scripts=scripts, chosen=chosen,
                           processes=processes,
                           table=table, rows=rows, extra_rows=3, result=result,
                           problems=problems, finding_text=finding_text,
                           position_label=position_label, instance_id=instance_id)
