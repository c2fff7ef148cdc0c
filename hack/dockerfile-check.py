#!/usr/bin/env python3
"""Static checks of the Dockerfile that hadolint does not make (`make lint-release`).

    python3 hack/dockerfile-check.py [Dockerfile] [--tools hack/tools.sh]

Rules (each violation is one line on stderr, exit status 1):
  digest      every FROM of an image (not `scratch`, not an earlier stage) names `@sha256:<64 hex>`
  latest      no image is named by the tag `latest` or by no tag at all
  user        the final stage ends with a USER that is not root (not `root`, `0`, `0:…`)
  apt         every `apt-get install` has `-y` and `--no-install-recommends`, and its RUN removes
              /var/lib/apt/lists/* (no stale package index baked into a layer)
  labels      the final stage sets the OCI labels users and scanners read (REQUIRED_LABELS)
  auditable   the binary is built with `cargo auditable build --release --locked`, never a plain
              `cargo build`
  sbom        a CycloneDX SBOM is generated and copied into the final image
  failpoints  no build enables the `failpoints` feature (crash points of test builds) or
              `--all-features`
  tools       the versions of cargo-auditable and cargo-cyclonedx installed in the image are the
              ones hack/tools.sh pins (one version per tool in the repository)

Plain Python, no dependencies: it runs before any virtualenv exists.
"""
from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

REQUIRED_LABELS = (
    "org.opencontainers.image.title",
    "org.opencontainers.image.description",
    "org.opencontainers.image.source",
    "org.opencontainers.image.revision",
    "org.opencontainers.image.version",
    "org.opencontainers.image.created",
    "org.opencontainers.image.licenses",
)
# The release tools whose versions the image and hack/tools.sh must agree on.
PINNED_TOOLS = {"cargo-auditable": "CARGO_AUDITABLE_VERSION", "cargo-cyclonedx": "CARGO_CYCLONEDX_VERSION"}
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


@dataclass
class Instruction:
    line: int  # 1-based line of the instruction's first line
    keyword: str  # upper case
    args: str  # continuation lines joined, comments inside the continuation dropped


@dataclass
class Stage:
    image: str
    name: str | None
    line: int
    instructions: list[Instruction] = field(default_factory=list)


def parse(text: str) -> list[Instruction]:
    """Instructions with backslash continuations joined; comment lines skipped."""
    out: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment line inside a continued instruction
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        joined = " ".join(p for p in pending if p)
        pending = []
        keyword, _, args = joined.partition(" ")
        out.append(Instruction(start, keyword.upper(), args.strip()))
    if pending:
        joined = " ".join(pending)
        keyword, _, args = joined.partition(" ")
        out.append(Instruction(start, keyword.upper(), args.strip()))
    return out


def stages(instructions: list[Instruction]) -> list[Stage]:
    result: list[Stage] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            words = [w for w in ins.args.split() if not w.startswith("--")]
            image = words[0] if words else ""
            name = words[2] if len(words) >= 3 and words[1].lower() == "as" else None
            result.append(Stage(image, name, ins.line))
        elif result:
            result[-1].instructions.append(ins)
    return result


def image_tag(image: str) -> str | None:
    """The tag of `registry:port/repo:tag@digest` (None when there is none)."""
    ref = image.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


def label_keys(args: str) -> set[str]:
    """Keys of a LABEL instruction (`k=v k2="v 2"`)."""
    return set(re.findall(r'(?:^|\s)([A-Za-z0-9._-]+)=(?:"(?:[^"\\]|\\.)*"|\S+)', args))


def check(text: str, tools_sh: str | None) -> list[str]:
    errors: list[str] = []
    instructions = parse(text)
    all_stages = stages(instructions)
    if not all_stages:
        return ["Dockerfile: no FROM instruction"]
    seen_names: set[str] = set()
    for stage in all_stages:
        image = stage.image
        if image == "scratch" or image in seen_names:
            pass
        elif "$" in image:
            errors.append(f"{stage.line}: digest: FROM {image} is a variable; name the image and its digest literally")
        else:
            if not DIGEST.search(image):
                errors.append(f"{stage.line}: digest: FROM {image} is not pinned by @sha256:<digest>")
            tag = image_tag(image)
            if tag is None and "@" not in image:
                errors.append(f"{stage.line}: latest: FROM {image} has no tag (it means latest)")
            if tag == "latest":
                errors.append(f"{stage.line}: latest: FROM {image} uses the tag latest")
        if stage.name:
            seen_names.add(stage.name)

    final = all_stages[-1]
    users = [i for i in final.instructions if i.keyword == "USER"]
    if not users:
        errors.append(f"{final.line}: user: the final stage sets no USER (it would run as root)")
    else:
        user = users[-1].args.split(":", 1)[0].strip()
        if user in ("root", "0", ""):
            errors.append(f"{users[-1].line}: user: the final stage runs as root ({users[-1].args})")

    for ins in instructions:
        if ins.keyword != "RUN":
            continue
        for command in re.split(r"&&|;|\|\|", ins.args):
            words = command.split()
            if "apt-get" in words and "install" in words:
                if "--no-install-recommends" not in words:
                    errors.append(f"{ins.line}: apt: apt-get install without --no-install-recommends")
                if not ({"-y", "--yes", "-qy", "-yq"} & set(words)):
                    errors.append(f"{ins.line}: apt: apt-get install without -y")
        if re.search(r"\bapt-get\b.*\binstall\b", ins.args) and "rm -rf /var/lib/apt/lists/*" not in ins.args:
            errors.append(f"{ins.line}: apt: the RUN that installs packages does not rm -rf /var/lib/apt/lists/*")
        if re.search(r"\bapt\s+install\b", ins.args):
            errors.append(f"{ins.line}: apt: use apt-get, not apt (no stable CLI)")
        if re.search(r"\bcargo\s+build\b", ins.args):
            errors.append(f"{ins.line}: auditable: plain `cargo build`; use `cargo auditable build --release --locked`")

        if re.search(r"\bcargo\b.*(--all-features|\bfailpoints\b)", ins.args):
            errors.append(f"{ins.line}: failpoints: a release build with crash points (the `failpoints` feature is for tests only)")

    labels: set[str] = set()
    for ins in final.instructions:
        if ins.keyword == "LABEL":
            labels |= label_keys(ins.args)
    for label in REQUIRED_LABELS:
        if label not in labels:
            errors.append(f"{final.line}: labels: the final stage lacks LABEL {label}")

    runs = " ".join(i.args for i in instructions if i.keyword == "RUN")
    if not re.search(r"cargo auditable build (?=.*--release)(?=.*--locked)", runs):
        errors.append("auditable: no `cargo auditable build --release --locked`")
    if "cargo cyclonedx" not in runs:
        errors.append("sbom: no `cargo cyclonedx` generates the SBOM")
    if not any(i.keyword == "COPY" and ".cdx.json" in i.args for i in final.instructions):
        errors.append(f"{final.line}: sbom: the final stage does not COPY the CycloneDX SBOM (*.cdx.json)")

    if tools_sh is not None:
        for tool, var in PINNED_TOOLS.items():
            pinned = re.search(rf"^{var}=(\S+)$", tools_sh, re.M)
            in_image = re.findall(rf"\b{re.escape(tool)}@([0-9][^\s]*)", runs)
            if not pinned:
                errors.append(f"tools: hack/tools.sh does not pin {var}")
            elif not in_image:
                errors.append(f"tools: the Dockerfile does not install {tool}@<version>")
            elif any(v != pinned.group(1) for v in in_image):
                errors.append(f"tools: the Dockerfile installs {tool}@{','.join(in_image)}, hack/tools.sh pins {pinned.group(1)}")
    return errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dockerfile", nargs="?", default="Dockerfile")
    parser.add_argument("--tools", default=str(Path(__file__).with_name("tools.sh")),
                        help="hack/tools.sh to compare tool versions with ('' to skip)")
    args = parser.parse_args()
    text = Path(args.dockerfile).read_text()
    tools_sh = Path(args.tools).read_text() if args.tools else None
    errors = check(text, tools_sh)
    for error in errors:
        print(f"{args.dockerfile}:{error}", file=sys.stderr)
    if not errors:
        print(f"dockerfile-check: {args.dockerfile}: ok")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
