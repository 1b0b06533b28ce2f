"""The Hydra dataset config written next to a prepared dataset, and the command that uses it.

It lands in ``<out>/conf/dataset/<config>.yaml``; ``python -m slifmr.train --config-dir
<out>/conf dataset=<config>`` adds that folder to Hydra's search path. Package configs come
first in that path, so a name that a packaged config already uses gets a ``-prepared`` suffix.
"""

from __future__ import annotations

import json
import re
import shlex
from importlib import resources
from pathlib import Path

from omegaconf import OmegaConf

from slifmr.data.expected import FIELDS

_REVERSE = {v: k for k, v in FIELDS.items()}


def packaged_config(name: str) -> Path | None:
    """``conf/dataset/<name>.yaml`` of the installed package, if there is one."""
    path = Path(str(resources.files("slifmr.conf") / "dataset" / f"{name}.yaml"))
    return path if path.is_file() else None


def known_expected(name: str) -> dict:
    """The ``expected`` block of the packaged config of that name ({} when none)."""
    path = packaged_config(name)
    if path is None:
        return {}
    block = OmegaConf.load(path).get("expected")
    return dict(OmegaConf.to_container(block)) if block else {}


def config_name(name: str) -> str:
    """A Hydra-safe option name (no spaces or '=' ...), suffixed when a packaged config has it."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "dataset"
    return f"{safe}-prepared" if packaged_config(safe) is not None else safe


def expected_block(counts: dict, split_has_valid: bool) -> dict:
    """The counts a training run must find when it reads the directory back (split=given, kcore=0)."""
    keys = ["users", "items", "interactions", "test", "entities", "relations", "triples"]
    if split_has_valid:
        keys[3:3] = ["train", "valid"]  # nothing is carved when the valid split is given
    out = {_REVERSE[k]: counts[k] for k in keys if k in counts}
    out.update({k: v for k, v in counts.items() if k.endswith("_dim") or k.endswith("_coverage")})
    return out


def _yaml_str(value: str) -> str:
    return json.dumps(value.replace("${", "\\${"))  # a JSON string is a YAML string; no interpolation


def write_config(conf_root: Path, final_dir: Path, manifest: dict, command: str) -> Path:
    """Write ``conf_root/dataset/<config>.yaml`` for the dataset that will live at ``final_dir``."""
    name = manifest["name"]
    cname = config_name(name)
    has_valid = manifest["counts"]["valid"] > 0
    expected = expected_block(manifest["counts"], has_valid)
    lines = [
        f"# Prepared by slifmr.prepare (slifmr {manifest['slifmr_version']}, {manifest['created']}) from",
        f"# {manifest['source']['layout']} {manifest['source']['path']}",
        f"# Use:  {command}",
        f"# Sources, sha256, counts and settings: {final_dir / 'dataset.json'}",
        "defaults:",
        "  - movietweetings-10core",
        "  - _self_",
        f"name: {_yaml_str(name)}",
        f"path: {_yaml_str(str(final_dir))}",
        "format: kgat",
        "features: null          # every <name>_feat.npy (with its <name>_mask.npy presence mask)",
        "reader_options: {}",
        "kcore: 0                # filtering was done by prepare (see dataset.json settings)",
        "split: given            # the split prepare wrote (train.txt / valid.txt / test.txt)",
        f"valid_ratio: {0.0 if has_valid else 0.1}        # {'valid.txt is given' if has_valid else 'carved from train.txt'}",
        "expected:               # a copy that differs warns, naming each field",
    ]
    lines += [f"  {k}: {v}" for k, v in expected.items()]
    path = conf_root / "dataset" / f"{cname}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def train_command(final_dir: Path, name: str) -> str:
    return f"python -m slifmr.train --config-dir {shlex.quote(str(final_dir / 'conf'))} dataset={config_name(name)}"
