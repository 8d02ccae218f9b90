"""A preset's model card (README.md), generated from its preset.json record."""

from __future__ import annotations

from typing import Any


def _figure(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else ("—" if value is None else str(value))


def render(record: dict[str, Any]) -> str:
    name, model, metrics = record["name"], record["model"], record["metrics"]
    dataset, recipe, shape = record["dataset"], record["recipe"], record["input"]["shape"]
    hparams = ", ".join(f"{k}={v}" for k, v in model["hparams"].items()) or "the builder's defaults"
    rows = "\n".join(f"| {k.replace('_', ' ')} | {_figure(v)} |" for k, v in metrics.items())
    settings = "\n".join(f"| {k} | {v} |" for k, v in recipe.items() if k not in ("model", "hparams"))
    parent = record.get("parent")
    lines = [
        f"# {name}",
        "",
        f"`{model['name']}` ({_origin(model)}) "
        f"trained on {dataset['name']} by keras-zoo {record['zoo_version']}, published {record['published']}.",
        "",
        f"- **License:** {record['license']}" + (f" (dataset terms: {dataset['terms']})" if dataset.get("terms") else ""),
        f"- **Input:** uint8 images {shape[0]}x{shape[1]}x{shape[2]}, scaled as {record['input']['scaling']}"
        + (f"; {record['input']['resize']}" if record["input"].get("resize") else ""),
        f"- **Classes ({len(record['classes'])}):** {', '.join(record['classes'][:20])}"
        + (" …" if len(record["classes"]) > 20 else ""),
        f"- **Hyperparameters:** {hparams}",
        f"- **Fine-tuned from:** {parent['preset']} ({parent['digest']})" if parent else "- **Trained from:** random weights",
        "",
        "## Metrics",
        "",
        "| metric | value |",
        "|---|---|",
        rows,
        "",
        "## Recipe",
        "",
        "| setting | value |",
        "|---|---|",
        settings,
        "",
        "## Use",
        "",
        "```bash",
        f"zoo evaluate {name}",
        f"zoo export {name} exports",
        f"zoo train {model['name']} --init {name} --dataset ./my_images   # fine-tune on your own images",
        "```",
        "",
        "```python",
        "import zoo",
        f'model = zoo.create_model("{model["name"]}", weights="{name}")',
        "```",
        "",
        "Every load checks the files against preset.json's sha256 manifest; `zoo verify "
        f"{name}` re-hashes them all.",
        "",
    ]
    return "\n".join(lines)


def _origin(model) -> str:
    """Where the model comes from: its distribution and version, or the process that registered it."""
    if model.get("distribution"):
        return f"{model['distribution']} {model.get('version') or ''}".strip()
    return "registered with zoo.register in the process that trained it: register it again to load this preset"
