"""Command-line entry: ``python -m adagrpo_core.cli reproduce --profile quick``."""
from __future__ import annotations

import argparse
import json
import sys


def reproduce(profile: str) -> int:
    from .semantic_ids import SIDConfig, build_semantic_ids
    from .worlds import WorldConfig, build_world, exposure_concentration

    cfg = {"quick": WorldConfig.quick, "full": WorldConfig.full}[profile]()
    world = build_world(cfg, progress=True)
    print(json.dumps(world.summary(), indent=2))
    print(exposure_concentration(world).round(3).to_markdown())
    sids = build_semantic_ids(world.item_features, SIDConfig())
    print(f"semantic IDs: {sids.length} tokens, codebooks {sids.codebook_sizes}, "
          f"collisions before the uniqueness token: {sids.collisions_before_uniqueness}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="adagrpo")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("reproduce", help="run the main job")
    r.add_argument("--profile", choices=["quick", "full"], default="quick")
    args = p.parse_args(argv)
    if args.cmd == "reproduce":
        return reproduce(args.profile)
    return 2


if __name__ == "__main__":
    sys.exit(main())
