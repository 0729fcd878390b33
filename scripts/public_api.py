#!/usr/bin/env python3
"""The public API of a crate, one item per line, from rustdoc's JSON.

    scripts/public-api.sh            # compare with docs/public-api/*.txt
    scripts/public-api.sh --bless    # rewrite them

This file reads the JSON that `cargo rustdoc -- --output-format json`
writes (see scripts/public-api.sh) and prints every item a user can name:
modules, types with their public fields and variants, traits with their
items, functions and methods with their signatures, constants, and the
trait implementations of each type (derives included: they are promises
too). Items marked #[doc(hidden)] are not part of the API and rustdoc leaves
them out. Written by hand because `cargo public-api` needs a nightly
toolchain and a build of its own; this needs neither (rustdoc's JSON output
is enabled on stable with RUSTC_BOOTSTRAP=1 by the script that calls this).
"""

import json
import sys

# The rustdoc JSON formats this reads (rustdoc 1.95 writes 57).
KNOWN_FORMATS = {57}


class Unknown(Exception):
    pass


def main():
    path = sys.argv[1]
    with open(path) as f:
        doc = json.load(f)
    if doc.get("format_version") not in KNOWN_FORMATS:
        sys.exit(f"public_api.py: rustdoc JSON format {doc.get('format_version')} is not one this "
                 f"reads ({sorted(KNOWN_FORMATS)}): check the listing's shapes and add it")
    lines = set()
    lister = Lister(doc, lines)
    root = doc["index"][str(doc["root"])]
    lister.module(root, root["name"])
    lister.finish()
    for line in sorted(lines):
        print(line)


class Lister:
    def __init__(self, doc, out):
        self.index = doc["index"]
        self.paths = doc["paths"]
        self.out = out
        self.seen = set()
        # Every path an item is named by: it is listed under the shortest,
        # the others as re-exports of it.
        self.names = {}
        self.canonical = {}

    def item(self, id_):
        return self.index.get(str(id_))

    # --- types -----------------------------------------------------------

    def ty(self, t):
        if t is None:
            return "()"
        if isinstance(t, str):
            return "_" if t == "infer" else t
        (kind, v), = t.items()
        if kind == "resolved_path":
            return self.path(v)
        if kind == "dyn_trait" and (v.get("lifetime") or len(v["traits"]) > 1) and getattr(self, "_in_ref", False):
            self._in_ref = False
            return "(" + self.ty(t) + ")"
        if kind == "dyn_trait":
            traits = " + ".join(self.poly_trait(p) for p in v["traits"])
            life = f" + {v['lifetime']}" if v.get("lifetime") else ""
            return f"dyn {traits}{life}"
        if kind == "generic":
            return v
        if kind == "primitive":
            return v
        if kind == "tuple":
            return "(" + ", ".join(self.ty(x) for x in v) + ("," if len(v) == 1 else "") + ")"
        if kind == "slice":
            return f"[{self.ty(v)}]"
        if kind == "array":
            return f"[{self.ty(v['type'])}; {v['len']}]"
        if kind == "borrowed_ref":
            life = f"{v['lifetime']} " if v.get("lifetime") else ""
            mut = "mut " if v["is_mutable"] else ""
            self._in_ref = True
            inner = self.ty(v["type"])
            self._in_ref = False
            return f"&{life}{mut}{inner}"
        if kind == "raw_pointer":
            return f"*{'mut' if v['is_mutable'] else 'const'} {self.ty(v['type'])}"
        if kind == "impl_trait":
            return "impl " + " + ".join(self.bound(b) for b in v)
        if kind == "qualified_path":
            trait = self.path(v["trait"]) if v.get("trait") and v["trait"].get("path") else ""
            if not trait:
                return f"{self.ty(v['self_type'])}::{v['name']}"
            return f"<{self.ty(v['self_type'])} as {trait}>::{v['name']}"
        if kind == "function_pointer":
            sig = v["sig"]
            args = ", ".join(self.ty(a[1]) for a in sig["inputs"])
            out = f" -> {self.ty(sig['output'])}" if sig.get("output") else ""
            return f"fn({args}){out}"
        raise Unknown(f"type kind {kind}")

    def path(self, p):
        """A path by what it names, not how the source spells it: a local
        item by its public name, another crate's by its full path."""
        name = p.get("path") or p.get("name") or "?"
        id_ = p.get("id")
        if id_ is not None and id_ in self.canonical:
            name = self.canonical[id_]
        elif id_ is not None and str(id_) in self.paths and name not in ("Self",):
            name = "::".join(self.paths[str(id_)]["path"])
        return name + self.args(p.get("args"))

    def args(self, a):
        if not a:
            return ""
        (kind, v), = a.items()
        if kind == "angle_bracketed":
            parts = []
            for arg in v["args"]:
                if isinstance(arg, str):
                    parts.append("_")
                    continue
                (k, x), = arg.items()
                parts.append(self.ty(x) if k == "type" else str(x) if k != "const" else x.get("expr", "_"))
            for c in v.get("constraints", []):
                binding = c["binding"]
                if "equality" in binding:
                    eq = binding["equality"]
                    value = self.ty(eq["type"]) if "type" in eq else str(eq)
                    parts.append(f"{c['name']} = {value}")
                else:
                    parts.append(f"{c['name']}: " + " + ".join(self.bound(b) for b in binding["constraint"]))
            return "<" + ", ".join(parts) + ">" if parts else ""
        if kind == "parenthesized":
            inputs = ", ".join(self.ty(x) for x in v["inputs"])
            out = f" -> {self.ty(v['output'])}" if v.get("output") else ""
            return f"({inputs}){out}"
        return ""

    def poly_trait(self, p):
        return self.path(p["trait"])

    def bound(self, b):
        (kind, v), = b.items()
        if kind == "trait_bound":
            modifier = "?" if v.get("modifier") == "maybe" else ""
            return modifier + self.path(v["trait"])
        if kind == "outlives":
            return v
        if kind == "use":
            return "use<..>"
        raise Unknown(f"bound kind {kind}")

    def generics(self, g):
        params = []
        for p in g.get("params", []):
            (kind, v), = p["kind"].items()
            if kind == "lifetime":
                outlives = " + ".join(v.get("outlives", []))
                params.append(p["name"] + (f": {outlives}" if outlives else ""))
            elif kind == "type":
                if v.get("is_synthetic"):
                    continue
                bounds = " + ".join(self.bound(b) for b in v.get("bounds", []))
                default = f" = {self.ty(v['default'])}" if v.get("default") else ""
                params.append(p["name"] + (f": {bounds}" if bounds else "") + default)
            elif kind == "const":
                params.append(f"const {p['name']}: {self.ty(v['type'])}")
        return "<" + ", ".join(params) + ">" if params else ""

    def where(self, g):
        preds = []
        for w in g.get("where_predicates", []):
            (kind, v), = w.items()
            if kind == "bound_predicate":
                hrtb = [p["name"] for p in v.get("generic_params", [])]
                prefix = f"for<{', '.join(hrtb)}> " if hrtb else ""
                preds.append(f"{prefix}{self.ty(v['type'])}: " + " + ".join(self.bound(b) for b in v["bounds"]))
            elif kind == "lifetime_predicate":
                preds.append(f"{v['lifetime']}: " + " + ".join(v["outlives"]))
            elif kind == "eq_predicate":
                preds.append(f"{self.ty(v['lhs'])} == {self.ty(v['rhs']) if isinstance(v['rhs'], dict) and 'type' not in v['rhs'] else v['rhs']}")
        return " where " + ", ".join(preds) if preds else ""

    def signature(self, name, f):
        sig = f["sig"]
        args = []
        for arg_name, t in sig["inputs"]:
            if arg_name == "self":
                rendered = self.ty(t)
                args.append({"Self": "self", "&Self": "&self", "&mut Self": "&mut self"}.get(rendered, f"self: {rendered}"))
            else:
                args.append(f"{arg_name}: {self.ty(t)}")
        out = f" -> {self.ty(sig['output'])}" if sig.get("output") else ""
        header = f.get("header", {})
        prefix = ("const " if header.get("is_const") else "") + ("async " if header.get("is_async") else "") + (
            "unsafe " if header.get("is_unsafe") else "")
        g = f.get("generics", {})
        return f"{prefix}fn {name}{self.generics(g)}({', '.join(args)}){out}{self.where(g)}"

    # --- items -----------------------------------------------------------

    def module(self, item, path):
        self.out.add(f"pub mod {path}")
        for cid in item["inner"]["module"]["items"]:
            child = self.item(cid)
            if child is None or child.get("visibility") != "public":
                continue
            (kind, inner), = child["inner"].items()
            if kind == "use":
                self.reexport(inner, path)
            else:
                self.named(child, f"{path}::{child['name']}")

    def reexport(self, use, path):
        target = self.item(use["id"]) if use.get("id") is not None else None
        if use.get("is_glob"):
            if target is not None and "module" in target["inner"]:
                for cid in target["inner"]["module"]["items"]:
                    child = self.item(cid)
                    if child is not None and child.get("visibility") == "public" and child.get("name"):
                        self.named(child, f"{path}::{child['name']}")
            else:
                self.out.add(f"pub use {path}::* (from {use['source']})")
            return
        if target is None:
            # An item of another crate, re-exported.
            self.out.add(f"pub use {path}::{use['name']} = {use['source']}")
            return
        self.named(target, f"{path}::{use['name']}")

    def named(self, item, path):
        if "module" in item["inner"]:
            if item["id"] not in self.seen:
                self.seen.add(item["id"])
                self.module(item, path)
            return
        self.names.setdefault(item["id"], set()).add(path)

    def finish(self):
        for id_, paths in self.names.items():
            self.canonical[id_] = min(paths, key=lambda p: (p.count("::"), p))
        for id_, paths in self.names.items():
            canonical = self.canonical[id_]
            for other in sorted(paths - {canonical}):
                self.out.add(f"pub use {other} = {canonical}")
            self.describe(self.item(id_), canonical)

    def describe(self, item, path):
        (kind, inner), = item["inner"].items()
        attrs = " ".join(str(a) for a in item.get("attrs", []))
        if "non_exhaustive" in attrs:
            self.out.add(f"#[non_exhaustive] {path}")
        g = inner.get("generics", {}) if isinstance(inner, dict) else {}
        if kind == "module":
            self.module(item, path)
        elif kind == "struct":
            struct_kind = inner["kind"]
            if not (isinstance(struct_kind, dict) and "tuple" in struct_kind):
                self.out.add(f"pub struct {path}{self.generics(g)}{self.where(g)}")
            if isinstance(struct_kind, dict) and "plain" in struct_kind:
                for fid in struct_kind["plain"]["fields"]:
                    field = self.item(fid)
                    if field and field.get("visibility") == "public":
                        self.out.add(f"pub {path}.{field['name']}: {self.ty(field['inner']['struct_field'])}")
                if struct_kind["plain"].get("has_stripped_fields"):
                    self.out.add(f"pub {path}: has private fields")
            elif isinstance(struct_kind, dict) and "tuple" in struct_kind:
                fields = [self.item(f) if f is not None else None for f in struct_kind["tuple"]]
                types = [self.ty(f["inner"]["struct_field"]) if f and f.get("visibility") == "public" else "_"
                         for f in fields]
                self.out.add(f"pub struct {path}{self.generics(g)}({', '.join(types)}){self.where(g)}")
            self.impls(inner["impls"], path)
        elif kind == "enum":
            self.out.add(f"pub enum {path}{self.generics(g)}{self.where(g)}")
            if inner.get("has_stripped_variants"):
                self.out.add(f"pub {path}: has hidden variants")
            for vid in inner["variants"]:
                self.variant(self.item(vid), path)
            self.impls(inner["impls"], path)
        elif kind == "union":
            self.out.add(f"pub union {path}")
            self.impls(inner["impls"], path)
        elif kind == "trait":
            unsafe = "unsafe " if inner.get("is_unsafe") else ""
            supertraits = " + ".join(self.bound(b) for b in inner.get("bounds", []))
            self.out.add(f"pub {unsafe}trait {path}{self.generics(g)}{': ' + supertraits if supertraits else ''}")
            for iid in inner["items"]:
                self.assoc(self.item(iid), path, in_trait=True)
            # Its implementations for other crates' types (`&E`, `Box<E>`).
            self.impls(inner.get("implementations", []), path)
        elif kind == "function":
            self.out.add(f"pub {self.signature(path, inner)}")
        elif kind == "constant":
            self.out.add(f"pub const {path}: {self.ty(inner['type'])}")
        elif kind == "static":
            self.out.add(f"pub static {path}: {self.ty(inner['type'])}")
        elif kind == "type_alias":
            self.out.add(f"pub type {path}{self.generics(g)} = {self.ty(inner['type'])}")
        elif kind == "macro":
            self.out.add(f"macro {path}!")
        else:
            raise Unknown(f"item kind {kind} at {path}")

    def variant(self, v, path):
        if v is None:
            return
        name = f"{path}::{v['name']}"
        vk = v["inner"]["variant"]["kind"]
        if vk == "plain":
            self.out.add(f"pub {name}")
        elif "tuple" in vk:
            types = [self.ty(self.item(f)["inner"]["struct_field"]) for f in vk["tuple"] if f is not None]
            self.out.add(f"pub {name}({', '.join(types)})")
        elif "struct" in vk:
            self.out.add(f"pub {name} {{ .. }}")
            for fid in vk["struct"]["fields"]:
                field = self.item(fid)
                self.out.add(f"pub {name}.{field['name']}: {self.ty(field['inner']['struct_field'])}")

    def impls(self, ids, path):
        for iid in ids:
            imp = self.item(iid)
            if imp is None:
                continue
            inner = imp["inner"]["impl"]
            # Blanket impls (`impl<T> From<T> for T`) are the standard
            # library's; auto traits (`Send`, `Sync`, ...) stay: losing one
            # breaks users.
            if inner.get("blanket_impl") is not None:
                continue
            # Unstable compiler-internal traits, not promises to users.
            trait_path = (inner.get("trait") or {}).get("path", "")
            if trait_path.rsplit("::", 1)[-1] in ("StructuralPartialEq", "Freeze", "UnsafeUnpin"):
                continue
            g = inner.get("generics", {})
            if inner.get("trait") is None:
                for aid in inner["items"]:
                    assoc = self.item(aid)
                    if assoc is not None and assoc.get("visibility") == "public":
                        self.assoc(assoc, path, in_trait=False)
            else:
                negative = "!" if inner.get("is_negative") else ""
                self.out.add(
                    f"impl{self.generics(g)} {negative}{self.path(inner['trait'])} for {self.ty(inner['for'])}{self.where(g)}")

    def assoc(self, item, path, in_trait):
        if item is None:
            return
        (kind, inner), = item["inner"].items()
        name = f"{path}::{item['name']}"
        if kind == "function":
            provided = " (provided)" if in_trait and inner.get("has_body") else ""
            self.out.add(f"pub {self.signature(name, inner)}{provided}")
        elif kind == "assoc_const":
            self.out.add(f"pub const {name}: {self.ty(inner['type'])}")
        elif kind == "assoc_type":
            bounds = " + ".join(self.bound(b) for b in inner.get("bounds", []))
            self.out.add(f"pub type {name}{': ' + bounds if bounds else ''}")


if __name__ == "__main__":
    main()
