#!/usr/bin/env bash
# tf-schema-fixture.sh — writes tools/infra/testdata/google-provider-schema.json: the google
# provider's schema for the provider block and exactly the resource types terraform/ declares, as
# `tofu providers schema -json` reports it from a provider binary, without descriptions. `make test`
# checks every resource in terraform/ against it (tools/infra TestTerraformMatchesProviderSchema),
# and that it came from the version terraform/versions.tf pins.
#
# Usage: scripts/tf-schema-fixture.sh PROVIDER_DIR [SOURCE]
#
#   PROVIDER_DIR  a directory holding terraform-provider-google*, built at the pinned version (the
#                 Go module proxy does not serve it: build it from a checkout of
#                 github.com/hashicorp/terraform-provider-google at tag v<version> with
#                 `GOFLAGS=-mod=mod go build -o DIR/terraform-provider-google_v<version> .`)
#   SOURCE        how that binary was made, recorded in the fixture (default: the tag)
#
# Needs tofu (scripts/deps.sh infra builds it into ~/.cache/mcloudtt/bin) and python3. Run it again
# after adding a resource type or changing the pinned version. FIXTURE_OUT writes elsewhere
# (scripts/infra-test.sh compares a fresh extract with the committed one).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${MCLOUDTT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mcloudtt}
TOFU=${TOFU:-$CACHE/bin/tofu}
dir=${1:?usage: scripts/tf-schema-fixture.sh PROVIDER_DIR [SOURCE]}
dir=$(cd "$dir" && pwd)
[ -x "$TOFU" ] || { echo "tf-schema-fixture: $TOFU is missing: run scripts/deps.sh infra (or set TOFU)" >&2; exit 1; }
compgen -G "$dir/terraform-provider-google*" >/dev/null || { echo "tf-schema-fixture: no terraform-provider-google* in $dir" >&2; exit 1; }
version=$(sed -n 's/^ *version *= *"=\{0,1\} *\([0-9.]*\)".*/\1/p' "$ROOT/terraform/versions.tf" | head -1)
[ -n "$version" ] || { echo "tf-schema-fixture: no pinned google version in terraform/versions.tf" >&2; exit 1; }
source=${2:-"github.com/hashicorp/terraform-provider-google tag v$version"}

work=$(mktemp -d "${TMPDIR:-/tmp}/tf-schema.XXXXXX")
trap 'rm -rf "$work"' EXIT
cat >"$work/tofurc" <<EOF
provider_installation {
  dev_overrides {
    "hashicorp/google" = "$dir"
  }
  direct {}
}
EOF
# A configuration that only requires the provider: terraform/'s own has a backend to initialise.
mkdir "$work/cfg"
cat >"$work/cfg/main.tf" <<'EOF'
terraform {
  required_providers {
    google = {
      source = "hashicorp/google"
    }
  }
}
EOF
TF_CLI_CONFIG_FILE="$work/tofurc" TF_DATA_DIR="$work/data" TF_IN_AUTOMATION=1 CHECKPOINT_DISABLE=1 \
  "$TOFU" -chdir="$work/cfg" providers schema -json >"$work/schema.json"

out=${FIXTURE_OUT:-$ROOT/tools/infra/testdata/google-provider-schema.json}
mkdir -p "$(dirname "$out")"
python3 - "$work/schema.json" "$ROOT/terraform" "$version" "$source" "$out" <<'PY'
import glob, json, re, sys
schema_file, tfdir, version, source, out = sys.argv[1:]
full = json.load(open(schema_file))
prov = next(v for k, v in full["provider_schemas"].items() if k.endswith("/hashicorp/google"))
types = set()
for f in glob.glob(tfdir + "/*.tf"):
    types.update(re.findall(r'^resource\s+"([a-z0-9_]+)"', open(f).read(), re.M))
missing = sorted(t for t in types if t not in prov["resource_schemas"])
if missing:
    sys.exit(f"tf-schema-fixture: the provider has no resource types {missing}")
# Descriptions are dropped from blocks and attributes (not attributes named "description").
DOC = ("description", "description_kind")
def attr(a):
    return {k: v for k, v in a.items() if k not in DOC}
def block(b):
    out = {k: v for k, v in b.items() if k not in DOC + ("attributes", "block_types")}
    if "attributes" in b:
        out["attributes"] = {n: attr(a) for n, a in b["attributes"].items()}
    if "block_types" in b:
        out["block_types"] = {n: dict(bt, block=block(bt["block"])) for n, bt in b["block_types"].items()}
    return out
def schema(s):
    return dict(s, block=block(s["block"]))
fixture = {
    "provider_version": version,
    "source": source,
    "provider": schema(prov["provider"]),
    "resource_schemas": {t: schema(prov["resource_schemas"][t]) for t in sorted(types)},
}
with open(out, "w") as f:
    json.dump(fixture, f, indent=1, sort_keys=True)
    f.write("\n")
print(f"tf-schema-fixture: {out}: google {version}, {len(types)} resource types")
PY
