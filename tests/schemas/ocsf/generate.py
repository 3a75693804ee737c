#!/usr/bin/env python3
"""Writes the JSON Schemas of the OCSF 1.8.0 classes monitor's `--format ocsf` prints.

The OCSF schema at https://github.com/ocsf/ocsf-schema is compiled by the OCSF server; its export
of release 1.8.0 is shipped in the `ocsf-json-schema` package on PyPI, whose generator turns a
class of it into a JSON Schema (draft 2020-12) with every referenced object embedded. This script
takes that export, keeps the core schema (it drops what the platform extensions `linux`, `win` and
`macos` add), checks it against a checkout of ocsf-schema at the 1.8.0 tag, and writes one schema
per class into this directory. See README.md.

    python3 -m venv /tmp/ocsf && /tmp/ocsf/bin/pip install ocsf-json-schema==1.2.0
    /tmp/ocsf/bin/python tests/schemas/ocsf/generate.py PATH/TO/ocsf-schema
"""

import argparse
import json
import pathlib
import sys

from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema

VERSION = "1.8.0"
# The classes monitor maps its records to (docs/formats.md).
CLASSES = {
    "network_activity": 4001,
    "process_activity": 1007,
    "authentication": 3002,
    "detection_finding": 2004,
    "application_lifecycle": 6002,
}
# The profiles monitor applies (its records' metadata.profiles).
PROFILES = ["datetime", "host"]
HERE = pathlib.Path(__file__).resolve().parent


def core_only(export):
    """Drops every attribute a platform extension adds, and the extensions' own classes and
    objects (their names carry the extension's prefix, `win/...`)."""
    for section in ("classes", "objects"):
        items = export[section]
        for name in [n for n in items if "/" in n]:
            del items[name]
        for item in items.values():
            attributes = item.get("attributes", {})
            for attr in [a for a, d in attributes.items() if d.get("extension")]:
                del attributes[attr]
    return export


def repo_items(repo, folder):
    """name -> definition of every JSON file under the repository's `folder`."""
    out = {}
    for path in sorted((repo / folder).rglob("*.json")):
        data = json.loads(path.read_text())
        if "name" in data:
            out[data["name"]] = data
    return out


def check_repo(export, repo, schemas):
    """The export is of the tagged repository: same version, class uids, and for the classes and
    every object their schemas embed, every attribute the repository's file declares is there.
    Where the core file declares constraints that the export has not (an extension patched them),
    the core's are taken: returns the problems and those corrections."""
    problems = []
    version = json.loads((repo / "version.json").read_text())["version"]
    if version != VERSION:
        problems.append(f"{repo}/version.json says {version}, not {VERSION}")
    categories = json.loads((repo / "categories.json").read_text())["attributes"]
    classes = repo_items(repo, "events")
    objects = repo_items(repo, "objects")
    for name, uid in CLASSES.items():
        defn = classes[name]
        compiled = export["classes"][name]
        if compiled["uid"] != uid:
            problems.append(f"class {name}: export uid {compiled['uid']}, expected {uid}")
        cat_uid = categories[compiled["category"]]["uid"]
        if cat_uid * 1000 + defn["uid"] != uid:
            problems.append(f"class {name}: repository uid {cat_uid * 1000 + defn['uid']}, expected {uid}")
        for attr in defn.get("attributes", {}):
            if attr != "$include" and attr not in compiled["attributes"]:
                problems.append(f"class {name}: attribute {attr} of the repository missing from the export")
    corrections = {}
    embedded = set()
    for schema in schemas.values():
        embedded.update(schema.get("$defs", {}))
    for name in sorted(embedded):
        defn = objects.get(name)
        if defn is None:
            problems.append(f"object {name}: not in the repository's objects/")
            continue
        compiled = export["objects"][name]
        for attr in defn.get("attributes", {}):
            if attr != "$include" and attr not in compiled["attributes"]:
                problems.append(f"object {name}: attribute {attr} of the repository missing from the export")
        if defn.get("constraints") and defn["constraints"] != compiled.get("constraints"):
            corrections[name] = defn["constraints"]
    return problems, corrections


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("repo", type=pathlib.Path, help="a checkout of ocsf-schema at the 1.8.0 tag")
    args = parser.parse_args()

    export = get_ocsf_schema(version=VERSION)
    if export.get("version") != VERSION:
        sys.exit(f"the packaged export is of {export.get('version')}, not {VERSION}")
    export = core_only(export)

    def generate():
        generator = OcsfJsonSchemaEmbedded(export)
        schemas = {}
        for name, uid in CLASSES.items():
            if generator.lookup_class_name_from_uid(uid) != name:
                sys.exit(f"class uid {uid} is not {name} in {VERSION}")
            schemas[name] = generator.get_class_schema(name, profiles=PROFILES)
        return schemas

    schemas = generate()
    problems, corrections = check_repo(export, args.repo, schemas)
    if problems:
        sys.exit("the export does not match the repository:\n  " + "\n  ".join(problems))
    for name, constraints in corrections.items():
        print(f"object {name}: the core's constraints {constraints} (the export has {export['objects'][name].get('constraints')})")
        export["objects"][name]["constraints"] = constraints
    if corrections:
        schemas = generate()
    print(f"checked against {args.repo}: version, class uids and attributes agree")

    for name, schema in schemas.items():
        path = HERE / f"{name}.json"
        path.write_text(json.dumps(schema, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
        print(f"wrote {path.relative_to(HERE.parent.parent.parent)} ({len(schema.get('$defs', {}))} objects)")


if __name__ == "__main__":
    main()
