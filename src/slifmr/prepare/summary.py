"""The printed summary, in the style of the paper's Table I (users, items, density, KG, features)."""

from __future__ import annotations


def table_one(manifest: dict) -> str:
    """A plain-text statistics table of a prepared dataset's manifest."""
    c = manifest["counts"]
    rows: list[tuple[str, str]] = [
        ("# Users", f"{c['users']:,}"),
        ("# Items", f"{c['items']:,}"),
        ("# Interactions", f"{c['interactions']:,}"),
        ("# Density", f"{c['density']:.1e}"),
        ("  train / valid / test", f"{c['train']:,} / {c['valid']:,} / {c['test']:,}"),
        ("Knowledge Graph", ""),
    ]
    if "triples" in c:
        rows += [("# Entities", f"{c['entities']:,}"), ("# Relations", f"{c['relations']:,}"),
                 ("# Triplets", f"{c['triples']:,}")]
    else:
        rows.append(("  (none)", ""))
    rows.append(("Multimodal Features", ""))
    feats = manifest.get("features", {})
    if not feats:
        rows.append(("  (none)", ""))
    for name, f in feats.items():
        missing = {k: v for k, v in f.get("missing", {}).items() if v}
        why = "" if not missing else "; missing: " + ", ".join(f"{k} {v:,}" for k, v in missing.items())
        rows.append((f"# {name} ({f['dim']}-d)", f"{f['coverage']:,} of {c['items']:,} items ({f['coverage_fraction']:.1%}){why}"))
    width = max(len(k) for k, _ in rows)
    title = f"Stats.{' ' * (width - 6)}  {manifest['name']}"
    return "\n".join([title] + [f"{k:<{width}}  {v}".rstrip() for k, v in rows])
