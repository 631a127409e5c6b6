"""Checks that the workspace's `rust-version` is true of its dependencies: no package in
Cargo.lock declares a newer one. (Only one toolchain can be installed on these machines, so
the declared version cannot be built with; this catches a dependency that raised it.)"""
import pathlib, re, sys, tomllib

root = pathlib.Path(__file__).resolve().parent.parent
declared = tomllib.loads((root / "Cargo.toml").read_text())["workspace"]["package"]["rust-version"]
version = lambda v: tuple(int(x) for x in (v.split(".") + ["0", "0"])[:3])
lock = tomllib.loads((root / "Cargo.lock").read_text())
registry = pathlib.Path.home() / ".cargo" / "registry" / "src"
newer = []
for package in lock["package"]:
    if "registry" not in package.get("source", ""):
        continue
    for index in registry.glob("*"):
        manifest = index / f"{package['name']}-{package['version']}" / "Cargo.toml"
        if manifest.exists():
            needs = tomllib.loads(manifest.read_text()).get("package", {}).get("rust-version")
            if needs and version(needs) > version(declared):
                newer.append(f"{package['name']} {package['version']} needs Rust {needs}")
            break
if newer:
    sys.exit(f"rust-version = \"{declared}\" in Cargo.toml is not true:\n  " + "\n  ".join(newer))
print(f"rust-version {declared}: no dependency needs a newer Rust")
